"""An ordinary messy census export through the CLI, as a user feeds it: a byte-order mark, a header
line, a bracketed file name and two broken rows. The run goes on, and the console and the run
summary say what was left out, where and why."""

import json
import os

import pytest

from preprocessing import census
from tests import helpers

pytestmark = pytest.mark.e2e


def test_left_out_rows_are_shown_and_summarized(tmp_path, data_root, adult_lines):
  rows = [line for line in adult_lines['train'] if line.strip()][:3000]
  bad_age = rows[10].replace(rows[10].split(',')[0], 'abc', 1)  # `age` of `abc`
  extra_field = rows[20] + ', 7'
  lines = [','.join(census.COLUMNS)] + rows[:10] + [bad_age] + rows[10:20] + [extra_field] + rows[20:]
  folder = tmp_path / 'exports'
  folder.mkdir()
  path = folder / 'adult [copy 1].data'
  path.write_bytes(b'\xef\xbb\xbf' + '\n'.join(lines).encode() + b'\n')
  # Line numbers in the file: the header is line 1, the bad rows lines 12 and 23.
  output_dir = tmp_path / 'out'

  result = helpers.run_cli('run', 'census', f'--data_root={data_root}', f'--train_data={path}',
                           '--eval_count=2000', '--train_steps=50', f'--output_dir={output_dir}',
                           timeout=1800)

  assert result.returncode == 0, result.stderr[-3000:]
  shown = result.stdout
  assert 'train: 2 malformed row(s) left out (0.067% of the split):' in shown, shown
  assert f'{path}:12: ' in shown and f'{path}:23: ' in shown
  assert f'header line (column names) skipped at {path}:1' in shown
  assert 'byte-order mark' in shown
  with open(output_dir / 'run_summary.json') as f:
    summary = json.load(f)
  assert summary['data']['train']['examples'] == 3000
  malformed = summary['malformed']['train']
  assert malformed['count'] == 2
  assert malformed['fraction'] == pytest.approx(2 / 3002, abs=1e-6)
  assert [(bad['file'], bad['line']) for bad in malformed['first']] == [(str(path), 12),
                                                                         (str(path), 23)]
  assert 'age' in malformed['first'][0]['reason']
  assert len(malformed['notices']) == 2
  assert 'eval' not in summary['malformed']  # adult.test's junk first line is not a bad row
  # The terminal holds the project's lines only; the libraries' output is in the run's log.
  assert 'tensorflow' not in shown.lower() and 'Traceback' not in result.stderr
  (log,) = [name for name in os.listdir(output_dir / 'logs') if name.endswith('.log')]
  assert os.path.getsize(output_dir / 'logs' / log) > 0
