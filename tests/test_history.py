"""Run history (pipelines.history): two real census runs in one output directory
(tests/report_runs.py), listed from ML Metadata, compared, and formatted for the terminal."""

from __future__ import annotations

import json
import os

import pytest

from pipelines import history
from tests import report_runs


@pytest.fixture(scope='module')
def runs(data_root):
  output_dir, summaries = report_runs.two_census_runs(data_root)
  return output_dir, summaries, history.list_runs(output_dir)


@pytest.mark.e2e
def test_list_runs_gives_one_entry_per_pipeline_run(runs):
  output_dir, summaries, listed = runs
  assert len(listed) == 2
  first, second = listed
  assert first['started_ms'] <= second['started_ms'] and first['run_id'] != second['run_id']
  store = history.metadata.open_store(history.metadata_path(output_dir))
  assert [c.name for c in history.run_contexts(store)] == [first['run_id'], second['run_id']]
  for entry, summary, (model_type, steps, _) in zip(listed, summaries, report_runs.RUNS):
    assert entry['model'] == 'census' and entry['model_type'] == model_type
    assert entry['settings']['train_steps'] == steps and entry['settings']['batch_size'] == 64
    assert {'accuracy', 'auc', 'example_count'} <= set(entry['metrics'])
    for name, value in entry['metrics'].items():
      assert value == pytest.approx(summary['metrics'][name]), name
    assert entry['blessed'] is summary['blessed']
    assert entry['error'] is None and entry['failed'] == [] and entry['running'] == []
  assert first['blessed'] is False and first['pushed_version'] is None
  assert second['blessed'] is True and second['pushed_model'] == summaries[1]['pushed_model']
  assert second['pushed_version'] == os.path.basename(summaries[1]['pushed_model'])
  # Run 2 changed the Trainer's settings only: everything before it came from the cache.
  for node in ('TextLineExampleGen', 'StatisticsGen', 'ExampleValidator', 'Transform'):
    assert node in first['ran'] and node in second['cached'], node
  assert 'Trainer' in second['ran'] and 'Evaluator' in second['ran']


@pytest.mark.e2e
def test_a_kept_summary_takes_precedence(runs, tmp_path):
  output_dir, summaries, listed = runs
  run_id = listed[0]['run_id']
  path = history.summary_path(output_dir, run_id)
  with open(path) as f:  # the runner keeps every run's summary under runs/<run id>/
    original = f.read()
  assert json.loads(original)['run_id'] == run_id
  try:
    kept = dict(summaries[0], metrics={'accuracy': 0.123})
    with open(path, 'w') as f:
      json.dump(kept, f)
    entry = history.list_runs(output_dir)[0]
    assert entry['metrics'] == {'accuracy': 0.123}
    assert entry['summary_file'] == path
    assert entry['settings']['data.eval'].endswith('adult.test.gz (rows 0-299)')
  finally:
    with open(path, 'w') as f:
      f.write(original)


@pytest.mark.e2e
def test_compare_runs_prints_metric_and_setting_differences(runs):
  output_dir, summaries, listed = runs
  text = history.compare_runs(output_dir, 1, -1)
  assert text == history.compare_runs(output_dir, listed[0]['run_id'], listed[1]['run_id'])
  a, b = summaries[0]['metrics']['accuracy'], summaries[1]['metrics']['accuracy']
  line = next(l for l in text.splitlines() if l.startswith('accuracy '))
  assert line.split() == ['accuracy', f'{a:.4f}', f'{b:.4f}', f'{b - a:+.4f}']
  assert '  train_steps: 20 -> 30' in text
  assert '  model_type: wide -> wide_deep' in text and text.count('model_type:') == 1
  assert '  blessed: False -> True' in text
  assert '  Transform: complete -> cached' in text
  assert 'batch_size' not in text  # unchanged settings are not listed


@pytest.mark.e2e
def test_format_runs_is_a_table_of_every_run(runs):
  _, _, listed = runs
  lines = history.format_runs(listed).splitlines()
  assert len(lines) == 4  # header, rule, two runs
  assert lines[0].split()[:2] == ['#', 'run'] and 'accuracy' in lines[0]
  assert lines[2].startswith('1  ' + listed[0]['run_id'])
  assert ' no ' in lines[2] and ' yes ' in lines[3]
  assert lines[3].rstrip().endswith(f'{len(listed[1]["ran"])}/{len(listed[1]["cached"])}/0')


def test_find_run_by_position_prefix_and_id():
  runs = [{'run_id': '2026-12-04T10:00:00.1'}, {'run_id': '2026-12-04T11:00:00.2'}]
  assert history.find_run(runs, 1) is runs[0] and history.find_run(runs, '-1') is runs[1]
  assert history.find_run(runs, '2026-12-04T11') is runs[1]
  with pytest.raises(KeyError, match='more than one run'):
    history.find_run(runs, '2026-12-04T')
  with pytest.raises(KeyError, match='no run number 3'):
    history.find_run(runs, 3)


def test_a_directory_without_runs_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='holds no run'):
    history.list_runs(str(tmp_path))
  assert history.format_runs([]) == 'no runs'


@pytest.mark.e2e
def test_run_id_since_names_the_run_that_just_ran(runs):
  output_dir, _, listed = runs
  assert history.run_id_since(output_dir, 'census', 0) == listed[-1]['run_id']
  assert history.run_id_since(output_dir, 'census', listed[-1]['started_ms']) == \
      listed[-1]['run_id']
  assert history.run_id_since(output_dir, 'census', 2 * listed[-1]['started_ms']) is None
  assert history.run_id_since(output_dir, 'mnist', 0) is None


@pytest.mark.e2e
def test_module_command_lists_and_compares(runs, capsys):
  output_dir, _, listed = runs
  assert history.main([output_dir]) == 0
  assert listed[0]['run_id'] in capsys.readouterr().out
  assert history.main([output_dir, '1', '2']) == 0
  assert 'train_steps: 20 -> 30' in capsys.readouterr().out
  assert history.main([output_dir, '1', '7']) == 1
  assert 'no run number 7' in capsys.readouterr().err
