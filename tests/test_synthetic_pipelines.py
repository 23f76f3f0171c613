"""The fast tier's whole pipelines: every model (census, cifar10, higgs, imagenet, mnist, movielens,
mrpc, wmt), each from small synthetic files in its canonical raw format (tests/synthetic.py) to the
Pusher, a handful of training steps of a small configuration, on the embedded default. No
../shared/data: these are what `pytest -m "not e2e"` runs end to end. The real-data runs, with
the models' published bars, are the e2e tier.

Each model's pipeline runs once (`synthetic_run`, cached for the module); the report checks of
issue 18 (the numbers `report.html` shows are `run_summary.json`'s, and it fetches nothing) read
the same runs."""

import glob
import json
import os
import re
import subprocess
import sys
from typing import Any, Dict, Tuple

import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  pylint: disable=unused-import  # wmt's SentencePiece ops

from pipelines import predict, report, report_svg, runner, spec as spec_lib
from pipelines.factory import RunConfig, RunInputs
from pipelines.models import imagenet as imagenet_model
from preprocessing import imagenet, mrpc
from tests import helpers, synthetic

STAGES = {'census': 'TextLineExampleGen', 'cifar10': 'ImageExampleGen',
          'higgs': 'TextLineExampleGen', 'imagenet': 'ImageExampleGen',
          'mnist': 'IdxExampleGen', 'movielens': 'TextLineExampleGen',
          'mrpc': 'TextLineExampleGen', 'wmt': 'ParallelTextExampleGen'}

ROWS = {'census': {'train': 400, 'eval': 200}, 'cifar10': {'train': 200, 'eval': 100},
        'higgs': {'train': 600, 'eval': 300}, 'mnist': {'train': 300, 'eval': 100},
        'mrpc': {'train': 160, 'eval': 60}}
IMAGENET = {'classes': 8, 'train_per_class': 6, 'eval_images': 16}
WMT = {'train_pairs': 300, 'eval_pairs': 20}


def _files(model: str, folder: str) -> Tuple[Dict[str, str], Dict[str, Any]]:
  """({split: raw file} in the model's canonical layout, the RunInputs fields of its side files)."""
  if model == 'census':
    return synthetic.census_files(folder, ROWS[model]), {}
  if model == 'cifar10':
    return synthetic.cifar10_files(folder, ROWS[model]), {}
  if model == 'higgs':
    return synthetic.higgs_files(folder, ROWS[model]), {}
  if model == 'imagenet':  # synsets.txt (label order) is the ExampleGen's side file
    files = synthetic.imagenet_files(folder, **IMAGENET)
    return files, {'example_gen_files': {
        imagenet_model.SYNSETS_FILE: os.path.join(folder, imagenet.SYNSETS)}}
  if model == 'movielens':
    return synthetic.movielens_files(folder), {}
  if model == 'mrpc':  # the WordPiece vocabulary is the Transform's side file (`--vocab_file`)
    files = synthetic.mrpc_files(folder, ROWS[model])
    return files, {'transform_files': {mrpc.VOCAB_FILE_KEY: synthetic.bert_vocab(folder)}}
  if model == 'wmt':  # the Transform trains the SentencePiece model: a small one here
    return synthetic.wmt_files(folder, **WMT), {}
  return synthetic.mnist_files(folder, ROWS[model]), {}


# Examples each split must hold (movielens: the NCF protocol's splits, counted by ExampleGen).
EXAMPLES = {**ROWS,
            'imagenet': {'train': IMAGENET['classes'] * IMAGENET['train_per_class'],
                         'eval': IMAGENET['eval_images']},
            'wmt': {'train': WMT['train_pairs'], 'eval': WMT['eval_pairs']}}

SETTINGS = {  # a handful of steps (higgs: a few trees; movielens: one epoch), small models
    'census': {'train_steps': 20, 'batch_size': 32},
    'cifar10': {'model_type': 'resnet20', 'train_steps': 10, 'batch_size': 32},
    'higgs': {'hparams': {'num_trees': 5, 'max_depth': 3}},
    # ResNet-50's 50 layers at 1/8 of the width, on 32x32 crops of the images.
    'imagenet': {'train_steps': 4, 'batch_size': 8,
                 'hparams': {'image_size': 32, 'width_multiplier': 0.125}},
    'movielens': {'batch_size': 64, 'hparams': {'train_epochs': 1, 'num_factors': 4,
                                                 'layers': [16, 8]}},
    'mnist': {'train_steps': 10, 'batch_size': 32},
    'mrpc': {'train_steps': 10, 'batch_size': 16},  # BERT-Tiny from scratch
    # Batches of 256 tokens; a short beam search for the Evaluator's BLEU.
    'wmt': {'train_steps': 10, 'batch_size': 256, 'transform_settings': {'vocab_size': 200},
            'hparams': {'beam_size': 2, 'extra_decode_length': 5, 'warmup_steps': 10}},
}
MODEL_TYPES = {'cifar10': 'resnet20'}  # the others run their spec's default model type

_RUNS: Dict[str, Any] = {}


@pytest.fixture(scope='module')
def synthetic_run(tmp_path_factory):
  """model -> (config, summary) of the model's pipeline on synthetic files, run on first use."""
  def run(model):
    if model not in _RUNS:
      folder = tmp_path_factory.mktemp(f'{model}_raw')
      files, side_files = _files(model, str(folder))
      config = RunConfig(output_dir=str(tmp_path_factory.mktemp(f'{model}_out')),
                         **SETTINGS[model])
      inputs = RunInputs(split_files=files, **side_files)
      try:
        _RUNS[model] = (config, runner.run(spec_lib.get(model), config, inputs, progress=False))
      except Exception as e:  # a failed run fails its other tests without running again
        _RUNS[model] = e
        raise
    if isinstance(_RUNS[model], Exception):
      pytest.fail(f'the {model} run failed: {runner.error_message(_RUNS[model])}')
    return _RUNS[model]
  return run


@pytest.mark.parametrize('model', sorted(STAGES))
def test_pipeline_runs_on_synthetic_raw_files_to_a_served_model(model, synthetic_run):
  config, summary = synthetic_run(model)

  assert summary['error'] is None, summary['error']
  stages = [s['name'] for s in summary['stages']]
  assert stages[0] in (STAGES[model], 'ImportSchemaGen') and STAGES[model] in stages
  assert ('Transform' in stages) == bool(spec_lib.get(model).preprocessing_fn)
  assert stages[-3:] == ['Evaluator', 'ServingCheck', 'Pusher'], stages
  assert not any(s['cached'] for s in summary['stages'])
  assert all(d['examples'] for d in summary['data'].values()), summary['data']
  if model in EXAMPLES:
    assert {s: d['examples'] for s, d in summary['data'].items()} == EXAMPLES[model]
  # The Trainer exported a SavedModel whose serving signature takes serialized raw tf.Examples.
  (exported,) = glob.glob(os.path.join(config.pipeline_root, 'Trainer', 'model', '*',
                                       'Format-Serving'))
  if spec_lib.get(model).serving_op_modules:
    import tensorflow_text  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  signature = tf.saved_model.load(exported).signatures['serving_default']
  assert signature.structured_input_signature[1]['examples'].dtype == tf.string
  # The serving check loaded it in a fresh process and its answers equal the model's.
  assert summary['infra_blessing']['blessed'] is True, summary['infra_blessing']
  # Pushed if and only if blessed (the synthetic labels are learnable, the bars are the real
  # data's, so either may happen at a handful of steps).
  assert (summary['pushed_model'] is not None) == summary['blessed']
  assert summary['model_type'] == MODEL_TYPES.get(model, spec_lib.get(model).default_model_type)
  assert summary['config']['model_type'] == summary['model_type']
  # Every summary metric of the spec was computed on the eval split.
  assert set(summary['metrics']) == set(spec_lib.get(model).evaluation.summary_metrics)
  if 'example_count' in summary['metrics']:
    assert summary['metrics']['example_count'] == EXAMPLES[model]['eval']


# ---------------------------------------------------------------------------------------------
# Issue 18: the report of each run shows run_summary.json's numbers and fetches nothing.

# Issue 18's acceptance names census, mnist, movielens and mrpc; the runs of the others are there
# too, and their reports are held to the same checks.
REPORT_MODELS = tuple(sorted(STAGES))


@pytest.mark.parametrize('model', REPORT_MODELS)
def test_report_shows_the_run_summarys_numbers_and_fetches_nothing(model, synthetic_run):
  config, summary = synthetic_run(model)
  path = os.path.join(config.output_dir, report.REPORT_FILE)
  with open(path, encoding='utf-8') as f:  # written by the run itself
    page = f.read()

  # One self-contained file: no http(s) resource, nothing loaded, only in-page links.
  assert 'http://' not in page and 'https://' not in page
  assert not re.search(r'<(script|link|img|iframe|object|embed)\b', page, re.I)
  assert not re.search(r'url\(|@import|\bsrc\s*=', page, re.I)
  assert all(h.startswith('#') for h in re.findall(r'href="([^"]*)"', page))

  # It is this run's report.
  assert f'Run {summary["run_id"]},' in page
  cells = helpers.report_cells(page)
  # The summary metrics: the model card's table, and the Evaluator's overall table (read from
  # TFMA's output, not from the summary), show the summary's values.
  summary_metrics = spec_lib.get(model).evaluation.summary_metrics
  assert summary_metrics and set(summary['metrics']) == set(summary_metrics)
  for name, tfma_name in summary_metrics.items():
    expected = report_svg.fmt(summary['metrics'][name])
    assert cells[('card-metrics', None, tfma_name)] == expected, name
    assert cells[('overall', None, tfma_name)] == expected, name
  # Every slice's metrics, as the summary records them.
  assert bool(summary['slices']) == bool(spec_lib.get(model).evaluation.slice_features)
  for slice_name, values in summary['slices'].items():
    for metric, value in values.items():
      assert cells[('slice-table', slice_name, metric)] == report_svg.fmt(value), (slice_name,
                                                                                   metric)
  # The blessing and the push, as the summary records them.
  verdict = 'blessed' if summary['blessed'] else 'not blessed'
  assert f'id="verdict">{verdict}<' in page
  if summary['pushed_model']:
    assert f'id="pushed-path">{summary["pushed_model"]}<' in page
  else:
    assert 'Nothing was pushed' in page and 'id="pushed-path"' not in page
  # Each split's file, its content digest and its examples.
  for split, data in summary['data'].items():
    assert re.fullmatch('[0-9a-f]{64}', data['sha256']), data
    if data['examples'] is not None:
      assert re.search(rf'<td>{split}</td><td class="path">[^<]*</td>\s*'
                       rf'<td class="path">{data["sha256"]}</td><td>[^<]*</td>\s*'
                       rf'<td class="num">{re.escape(report_svg.fmt(data["examples"]))}</td>',
                       page), split


def test_wmt_predict_translates_english_lines_as_the_served_model(synthetic_run, tmp_path):
  """`official-tfx predict wmt` on ten English lines (the synthetic newstest's): one record per
  line, in order, each the translation the SavedModel's `translate` signature gives."""
  config, summary = synthetic_run('wmt')
  assert summary['error'] is None, summary['error']
  (model_dir,) = glob.glob(os.path.join(config.pipeline_root, 'Trainer', 'model', '*',
                                        'Format-Serving'))
  with open(summary['data']['eval']['file'], encoding='utf-8') as f:
    english = f.read().split('\n')[:10]
  source = tmp_path / 'english.txt'
  source.write_text('\n'.join(english) + '\n', encoding='utf-8')
  output = tmp_path / 'german.jsonl'
  result = predict.predict('wmt', str(source), str(output), model_dir=model_dir)
  with open(output, encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  assert [r['line'] for r in records] == list(range(1, 11))
  assert (result.predictions, result.malformed) == (10, 0)
  served = tf.saved_model.load(model_dir).signatures['translate'](inputs=tf.constant(english))
  assert [r['outputs'] for r in records] == [
      t.decode('utf-8') for t in served['outputs'].numpy()]


@pytest.mark.parametrize('model', ['mnist', 'movielens', 'mrpc'])  # census's: tests/test_report.py
def test_report_renders_offline_in_headless_chromium(model, synthetic_run, tmp_path):
  config, _ = synthetic_run(model)
  helpers.check_report_screenshot(os.path.join(config.output_dir, report.REPORT_FILE),
                                  str(tmp_path / f'{model}.png'))


# ---------------------------------------------------------------------------------------------
# Issue 20: benchmarks/profile_stage.py profiles a finished run's stage again (where its time goes).

def test_profile_stage_reruns_the_runs_evaluator_under_cprofile(synthetic_run, tmp_path):
  config, summary = synthetic_run('census')
  assert summary['error'] is None, summary['error']
  script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks',
                        'profile_stage.py')
  figures_file = tmp_path / 'profile.json'
  result = subprocess.run(
      [sys.executable, script, f'--run_dir={config.output_dir}', '--stage=Evaluator',
       f'--rows={EXAMPLES["census"]["eval"]}', '--top=5', f'--json={figures_file}'],
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  figures = json.loads(figures_file.read_text())
  assert figures['executor'] == 'tfx.components.evaluator.executor.Executor'
  assert figures['seconds'] > 0 and figures['rows_per_s'] > 0
  shares = {lib: share for lib, _, share in figures['by_library']}
  # TFMA's own code runs the evaluation: it is among the libraries with self time.
  assert shares.get('tensorflow_model_analysis', 0) > 0, shares
  assert 99 <= sum(shares.values()) <= 101
  assert len(figures['top_self']) == 5 and figures['top_cumulative'][0]['cumulative_s'] > 0
  assert 'self seconds by library:' in result.stdout and 'Evaluator' in result.stdout
  # The run's own outputs are untouched: the rerun wrote to a scratch directory.
  evaluations = glob.glob(os.path.join(config.pipeline_root, 'Evaluator', 'evaluation', '*'))
  assert len(evaluations) == 1

  # Narrowed to TFMA's floor: one metric on the overall slice, timed without the profiler.
  result = subprocess.run(
      [sys.executable, script, f'--run_dir={config.output_dir}', '--stage=Evaluator',
       '--eval_metrics=ExampleCount', '--noeval_slices', '--noprofile'],
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"Evaluator \(metrics \['ExampleCount'\], overall slice only\), "
                   r"in-process DirectRunner: [0-9.]+ s", result.stdout), result.stdout

  # A stage the run does not have is named, with the ones it has.
  result = subprocess.run([sys.executable, script, f'--run_dir={config.output_dir}',
                           '--stage=Tuner'], capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode != 0
  assert 'no completed Tuner execution' in result.stderr and "'Evaluator'" in result.stderr
