"""AnomaliesGate: stops a pipeline run when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the run go on. Wired upstream of Transform, this gate turns
any anomaly into a failed run before anything is trained or pushed, with a message listing each
anomalous split and feature.

(No `from __future__ import annotations` here: TFX's @component reads the annotations as types.)
"""


import os
from typing import List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE = 'SchemaDiff.pb'  # tfx.components.example_validator.executor.DEFAULT_FILE_NAME


class AnomaliesFoundError(RuntimeError):
  """ExampleValidator reported anomalies; the run must stop."""


def describe_anomalies(artifact: types.Artifact) -> List[str]:
  """Returns one line `split: feature: description` per anomaly in an ExampleAnomalies artifact.

  Raises:
    FileNotFoundError: a split named by the artifact has no anomalies file.
  """
  lines = []
  for split in artifact_utils.decode_split_names(artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(io_utils.read_bytes_file(path))
    for feature, info in sorted(anomalies.anomaly_info.items()):
      text = info.description or info.short_description
      lines.append(f'{split}: {feature}: {info.short_description}: {text}')
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      lines.append(f'{split}: (dataset): {info.short_description}: {info.description}')
  return lines


@component
def AnomaliesGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies]) -> None:
  """Raises AnomaliesFoundError listing the anomalies, if ExampleValidator found any."""
  found = describe_anomalies(anomalies)
  if found:
    raise AnomaliesFoundError(
        f'ExampleValidator found {len(found)} anomalies against the curated schema; the run stops '
        'before Transform:\n  ' + '\n  '.join(found))
