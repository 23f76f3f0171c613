"""AnomaliesGate: stops a pipeline run when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the run go on. Wired upstream of Transform, this gate turns
any anomaly into a failed run before anything is trained or pushed, with a message that lists, for
each anomalous split, the raw files the split was read from and each anomalous feature:

  ExampleValidator found 1 anomaly against the curated schema; the run stops before Transform:
    split 'train', read from /data/mnist/t10k-images-idx3-ubyte.gz, .../t10k-labels-idx1-ubyte.gz:
      train: height: Out-of-range values: Unexpectedly large value: 32.

(each anomaly as `split: feature: short description: description`).

The files come from the optional `examples` input (the ExampleGen's Examples): each split's
`malformed_rows-<split>.json` report (components.record_checks) lists them. An output split with
no report of its own (built by a `split_fn` from one input split, as MovieLens' train and eval
are) is read from the files of every input split. Without `examples`, the message names splits
and features only.

(No `from __future__ import annotations` here: TFX's @component reads the annotations as types.)
"""


import json
import os
from typing import Dict, List, Optional

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE = 'SchemaDiff.pb'  # tfx.components.example_validator.executor.DEFAULT_FILE_NAME
_REPORT_PREFIX = 'malformed_rows-'  # components.record_checks' split reports


class AnomaliesFoundError(RuntimeError):
  """ExampleValidator reported anomalies; the run must stop."""


def split_anomalies(artifact: types.Artifact) -> Dict[str, List[str]]:
  """{split: one `split: feature: short description: description` line per anomaly} of an
  ExampleAnomalies artifact, for the splits that have anomalies, in split order (a dataset-wide
  anomaly has `(dataset)` for its feature).

  Raises:
    FileNotFoundError: a split named by the artifact has no anomalies file.
  """
  found = {}
  for split in artifact_utils.decode_split_names(artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(io_utils.read_bytes_file(path))
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
      text = info.description or info.short_description
      lines.append(f'{split}: {feature}: {info.short_description}: {text}')
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      lines.append(f'{split}: (dataset): {info.short_description}: {info.description}')
    if lines:
      found[split] = lines
  return found


def describe_anomalies(artifact: types.Artifact) -> List[str]:
  """Returns one line `split: feature: short description: description` per anomaly in an
  ExampleAnomalies artifact.

  Raises:
    FileNotFoundError: a split named by the artifact has no anomalies file.
  """
  return [line for lines in split_anomalies(artifact).values() for line in lines]


def split_files(examples: Optional[types.Artifact]) -> Dict[str, List[str]]:
  """{split: the raw files it was read from}, from the `malformed_rows-<split>.json` reports in an
  Examples artifact (its `files`); {} without an artifact or reports. A report that cannot be
  read is left out (the message then names the split without its files)."""
  if examples is None or not tf.io.gfile.isdir(examples.uri):
    return {}
  files = {}
  for name in sorted(tf.io.gfile.listdir(examples.uri)):
    if name.startswith(_REPORT_PREFIX) and name.endswith('.json'):
      try:
        with tf.io.gfile.GFile(os.path.join(examples.uri, name)) as f:
          report = json.load(f)
        files[report['split']] = [str(p) for p in report['files']]
      except (ValueError, KeyError, TypeError, tf.errors.OpError):
        continue
  return files


def gate_message(artifact: types.Artifact, examples: Optional[types.Artifact] = None
                 ) -> Optional[str]:
  """The message that stops the run, or None when ExampleValidator found no anomaly.

  Args:
    artifact: ExampleValidator's ExampleAnomalies.
    examples: the Examples it validated (the ExampleGen's), whose reports name each split's
      files; None names splits and features only.
  """
  found = split_anomalies(artifact)
  if not found:
    return None
  sources = split_files(examples)
  every_file = sorted({path for paths in sources.values() for path in paths})
  count = sum(len(lines) for lines in found.values())
  parts = [f'ExampleValidator found {count} {"anomaly" if count == 1 else "anomalies"} against '
           'the curated schema; the run stops before Transform:']
  for split, lines in found.items():
    files = sources.get(split) or every_file
    parts.append(f'  split {split!r}' + (f', read from {", ".join(files)}:' if files else ':'))
    parts.extend(f'    {line}' for line in lines)
  return '\n'.join(parts)


@component
def AnomaliesGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
                  examples: InputArtifact[standard_artifacts.Examples] = None) -> None:
  """Raises AnomaliesFoundError, naming each anomalous split's files and features, if
  ExampleValidator found any anomaly. `examples` (optional): the ExampleGen's Examples."""
  message = gate_message(anomalies, examples)
  if message:
    raise AnomaliesFoundError(message)
