"""Helpers shared by the tests: run TextLineExampleGen's executor, read its output, run the CLI."""

import os
import subprocess
import sys
from typing import List, Mapping, Optional, Tuple

import tensorflow as tf
from tfx.types import standard_artifacts

from components import text_example_gen


def run_example_gen(output_dir: str, input_base: str, splits: Mapping[str, str],
                    line_parser: str, max_malformed_fraction: float,
                    row_ranges: Optional[Mapping[str, Tuple[int, Optional[int]]]] = None):
  """Runs TextLineExampleGen's executor in process; returns the Examples artifact it wrote."""
  component = text_example_gen.TextLineExampleGen(
      input_base=input_base, splits=dict(splits), line_parser=line_parser,
      max_malformed_fraction=max_malformed_fraction, row_ranges=row_ranges)
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(output_dir, 'examples')
  properties = {k: v for k, v in component.exec_properties.items() if v is not None}
  text_example_gen.Executor().Do({}, {'examples': [examples]}, properties)
  return examples


def read_examples(uri: str, split: str) -> List[tf.train.Example]:
  """The tf.Examples of one split of an Examples artifact."""
  files = tf.io.gfile.glob(os.path.join(uri, f'Split-{split}', '*'))
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
  """`official-tfx ARGS...` in a fresh process; returns the finished process (text output)."""
  return subprocess.run([sys.executable, '-m', 'pipelines.cli', *args], capture_output=True,
                        text=True, timeout=timeout, check=False)
