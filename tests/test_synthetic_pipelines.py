"""The fast tier's whole pipelines: census, higgs, movielens and mnist, each from small synthetic
files in its canonical raw format (tests/synthetic.py) to the Pusher, a handful of training steps,
on the embedded default. No ../shared/data: these are what `pytest -m "not e2e"` runs end to end.
The real-data runs, with the models' published bars, are the e2e tier."""

import glob
import os

import pytest
import tensorflow as tf

from pipelines import runner, spec as spec_lib
from pipelines.factory import RunConfig
from tests import synthetic

STAGES = {'census': 'TextLineExampleGen', 'higgs': 'TextLineExampleGen',
          'movielens': 'TextLineExampleGen', 'mnist': 'IdxExampleGen'}


def _files(model, folder):
  if model == 'census':
    return synthetic.census_files(folder, {'train': 400, 'eval': 200})
  if model == 'higgs':
    return synthetic.higgs_files(folder, {'train': 600, 'eval': 300})
  if model == 'movielens':
    return synthetic.movielens_files(folder)
  return synthetic.mnist_files(folder, {'train': 300, 'eval': 100})


SETTINGS = {  # a handful of steps (higgs: a few trees; movielens: one epoch)
    'census': {'train_steps': 20, 'batch_size': 32},
    'higgs': {'hparams': {'num_trees': 5, 'max_depth': 3}},
    'movielens': {'batch_size': 64, 'hparams': {'train_epochs': 1, 'num_factors': 4,
                                                 'layers': [16, 8]}},
    'mnist': {'train_steps': 10, 'batch_size': 32},
}


@pytest.mark.parametrize('model', sorted(STAGES))
def test_pipeline_runs_on_synthetic_raw_files_to_a_served_model(model, tmp_path):
  folder = tmp_path / 'raw'
  folder.mkdir()
  files = _files(model, str(folder))
  config = RunConfig(output_dir=str(tmp_path / 'out'), **SETTINGS[model])
  summary = runner.run(spec_lib.get(model), config, files, progress=False)

  assert summary['error'] is None, summary['error']
  stages = [s['name'] for s in summary['stages']]
  assert stages[0] in (STAGES[model], 'ImportSchemaGen') and STAGES[model] in stages
  assert stages[-3:] == ['Evaluator', 'ServingCheck', 'Pusher'], stages
  assert not any(s['cached'] for s in summary['stages'])
  assert all(d['examples'] for d in summary['data'].values()), summary['data']
  # The Trainer exported a SavedModel whose serving signature takes serialized raw tf.Examples.
  (exported,) = glob.glob(os.path.join(config.pipeline_root, 'Trainer', 'model', '*',
                                       'Format-Serving'))
  signature = tf.saved_model.load(exported).signatures['serving_default']
  assert signature.structured_input_signature[1]['examples'].dtype == tf.string
  # The serving check loaded it in a fresh process and its answers equal the model's.
  assert summary['infra_blessing']['blessed'] is True, summary['infra_blessing']
  # Pushed if and only if blessed (the synthetic labels are learnable, the bars are the real
  # data's, so either may happen at a handful of steps).
  assert (summary['pushed_model'] is not None) == summary['blessed']
  assert summary['config']['model_type'] == spec_lib.get(model).default_model_type
