"""One pipeline object, every engine: the `tfx` CLI (local and beam), Airflow, Kubeflow Pipelines v2
and Vertex AI Pipelines.

`official-tfx run` drives LocalDagRunner itself (pipelines/runner.py). The other engines load a
runner file (pipelines/runners/) that builds the same pipeline with `pipeline_from_environment`.
The `tfx` CLI and Airflow run or import those files without arguments, so the settings come from
the environment:

  OFFICIAL_TFX_MODEL   the model (`official-tfx list`; default census)
  OFFICIAL_TFX_FLAGS   `official-tfx run` flags, e.g. '--data_root=../shared/data --train_steps=500'

The flags mean what they mean on the command line. The pipeline is named after the model, so the
`tfx` CLI and Airflow know it by that name (`--pipeline_name=census`, DAG id `census`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shlex
from typing import Any, Dict, Mapping, Optional

from absl import flags
from tfx import v1 as tfx

from pipelines import factory, metadata_store, settings
from pipelines.factory import RunConfig
from pipelines.spec import ModelSpec

MODEL_ENV = 'OFFICIAL_TFX_MODEL'
FLAGS_ENV = 'OFFICIAL_TFX_FLAGS'
DEFAULT_MODEL = 'census'
# Airflow: a DAG that runs when triggered (`airflow dags trigger`, the UI), not on a schedule.
AIRFLOW_DAG_CONFIG = {'schedule': None, 'start_date': datetime.datetime(2026, 1, 1),
                      'catchup': False, 'max_active_runs': 1}


class EngineConfigError(ValueError):
  """The environment or flags do not describe a pipeline this engine can run."""


def parse_environment() -> str:
  """Parses $OFFICIAL_TFX_FLAGS with the `official-tfx` flags; returns $OFFICIAL_TFX_MODEL.

  Flags not in $OFFICIAL_TFX_FLAGS take their defaults, whatever an earlier parse set.

  Raises:
    EngineConfigError: a flag that does not exist or does not parse, or a positional argument.
  """
  argv = ['official-tfx', *shlex.split(os.environ.get(FLAGS_ENV, ''))]
  settings.FLAGS.unparse_flags()
  try:
    rest = settings.FLAGS(argv)
  except flags.Error as e:
    raise EngineConfigError(f'${FLAGS_ENV}: {e}') from e
  if rest[1:]:
    raise EngineConfigError(f'${FLAGS_ENV}: only flags are allowed, not {rest[1:]}')
  return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def pipeline_from_environment() -> tfx.dsl.Pipeline:
  """The pipeline of $OFFICIAL_TFX_MODEL with the settings of $OFFICIAL_TFX_FLAGS.

  Resolves and verifies the dataset's files as `official-tfx run` does (a data root, the cache, or
  a download), and creates the output directory that holds ML Metadata and the pushed model. ML
  Metadata on a server (the --metadata_* flags) is connected to first and recorded in the output
  directory (pipelines.metadata_store.claim), as `official-tfx run` does.

  Raises:
    EngineConfigError: bad flags; KeyError: unknown model; ValueError: a bad setting;
    preprocessing.datasets.DatasetError: a missing file or a checksum mismatch;
    metadata_store.MetadataConnectionError: the ML Metadata server cannot be used.
  """
  spec, config, inputs = settings.build_run(parse_environment())
  os.makedirs(config.output_dir, exist_ok=True)
  if config.metadata_connection is not None:
    metadata_store.hide_passwords_in_logs()
    metadata_store.claim(config.metadata_connection, config.output_dir)
  return factory.create_pipeline(spec, config, inputs)


def airflow_dag(dag_config: Optional[Mapping[str, Any]] = None):
  """The Airflow DAG of the environment's pipeline (TFX's AirflowDagRunner).

  Each component is one Airflow task that runs in the worker's process, with ML Metadata in the
  run's SQLite file and the Beam stages on the runner the flags choose. A task waits only for the
  components whose outputs it reads (and the explicit orderings: the AnomaliesGate before the
  Transform or Trainer, the Evaluator before the ServingCheck), so an executor that runs several
  task instances at once (the LocalExecutor, on PostgreSQL or MySQL) starts the ExampleGen,
  ImportSchemaGen and the latest-blessed-model resolver together. Their ML Metadata writes wait
  for each other on SQLite's lock.

  Args:
    dag_config: arguments of airflow.models.DAG; default AIRFLOW_DAG_CONFIG.

  Returns:
    airflow.models.DAG with dag_id = the model name.
  """
  from tfx.orchestration.airflow import airflow_dag_runner  # pylint: disable=g-import-not-at-top
  runner = airflow_dag_runner.AirflowDagRunner(airflow_dag_runner.AirflowPipelineConfig(
      airflow_dag_config=dict(AIRFLOW_DAG_CONFIG if dag_config is None else dag_config)))
  return runner.run(pipeline_from_environment())


def kubeflow_v2_config(spec: ModelSpec, config: RunConfig,
                       inputs: 'factory.RunInputs | Mapping[str, str]') -> RunConfig:
  """Checks a run's settings for Kubeflow / Vertex and returns them completed.

  Every component runs in its own container, so everything it reads or writes must be remote:
  the raw data, the pipeline root and the Pusher's destination (default
  `<pipeline_root>/serving_model`).

  Raises:
    EngineConfigError: a local data file, pipeline root or serving model directory.
  """
  split_files = factory.RunInputs.of(inputs).split_files
  problems = [f'--{split}_data must be a remote URI (gs://...), not {path!r}'
              for split, path in split_files.items() if not factory.is_remote(path)]
  if not (config.remote_root and factory.is_remote(config.remote_root)):
    problems.append('--pipeline_root must be a remote URI (gs://...)')
  elif config.serving_model_dir == os.path.join(config.output_dir, 'serving_model'):
    config = dataclasses.replace(
        config, serving_model_dir=config.remote_root.rstrip('/') + '/serving_model')
  if not factory.is_remote(config.serving_model_dir):
    problems.append('--serving_model_dir must be a remote URI (gs://...)')
  if problems:
    raise EngineConfigError(
        f'{spec.name} on Kubeflow / Vertex: its components run in containers and read and write '
        'remote storage only:\n  ' + '\n  '.join(problems))
  return config


def kubeflow_v2_pipeline_job(spec: ModelSpec, config: RunConfig,
                             inputs: 'factory.RunInputs | Mapping[str, str]',
                             image: Optional[str] = None,
                             output_file: Optional[str] = None) -> Dict[str, Any]:
  """Compiles the pipeline to a KFP v2 PipelineJob (TFX's KubeflowV2DagRunner).

  Args:
    spec, config, inputs: the run, as for factory.create_pipeline; checked by
      kubeflow_v2_config.
    image: the container image of every component; it must have this package installed (the
      components name their code by module path). Default: TFX's own image.
    output_file: where to write it: `.json` (a PipelineJob, as Vertex AI Pipelines submits it) or
      `.yaml` (the PipelineSpec, as Kubeflow Pipelines uploads it). None writes nothing.

  Returns:
    The PipelineJob as a JSON dict (`pipelineSpec` holds the KFP v2 PipelineSpec).

  Raises:
    EngineConfigError: see kubeflow_v2_config.
  """
  config = kubeflow_v2_config(spec, config, inputs)
  pipeline = factory.create_pipeline(spec, config, inputs, local_metadata=False)
  runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image)
  if output_file is None:
    return tfx.orchestration.experimental.KubeflowV2DagRunner(runner_config).run(
        pipeline, write_out=False)
  output_file = os.path.abspath(output_file)
  return tfx.orchestration.experimental.KubeflowV2DagRunner(
      runner_config, output_dir=os.path.dirname(output_file),
      output_filename=os.path.basename(output_file)).run(pipeline)


def compile_kubeflow_v2(model: str, output_file: Optional[str] = None,
                        image: Optional[str] = None) -> str:
  """`official-tfx compile MODEL`: writes the KFP v2 pipeline of `model` from the parsed flags.

  The raw data must be given as remote files (`--train_data`, `--eval_data`): the registry's
  checksums and cache are for local runs. With `--beam_runner=dataflow`, the Dataflow workers run
  `image` too (`--sdk_container_image`), unless --setup_file or --sdk_container_image says otherwise.

  Returns:
    The path written (default `<model>_pipeline.json`).

  Raises:
    EngineConfigError: a split without a remote data file, an ML Metadata flag (Kubeflow and
      Vertex bring their own), or see kubeflow_v2_config.
  """
  spec = settings.spec_lib.get(model)
  flag_values = settings.FLAGS
  given = [f'--{name}' for name in settings.METADATA_FLAGS if flag_values[name].present]
  if given:
    raise EngineConfigError(f'compile {model}: {given[0]} does not apply: Kubeflow and Vertex '
                            'bring their own ML Metadata')
  missing = [split for split in spec.dataset.splits if not getattr(flag_values, f'{split}_data')]
  if missing:
    raise EngineConfigError(
        f'compile {model}: give ' + ' and '.join(f'--{split}_data' for split in missing) +
        ' as remote URIs (gs://...): the components read them from their containers')
  workers_image = None
  if (flag_values.beam_runner == 'dataflow' and not flag_values.setup_file
      and not flag_values.sdk_container_image):
    if not image:
      raise EngineConfigError(f'compile {model}: Dataflow workers need this package: give --image '
                              '(also used as their --sdk_container_image) or --setup_file')
    workers_image = image  # the checkout's setup.py is not in the container
  spec, config, inputs = settings.build_run(model, local_metadata=False,
                                            sdk_container_image=workers_image)
  output_file = output_file or f'{model}_pipeline.json'
  kubeflow_v2_pipeline_job(spec, config, inputs, image, output_file)
  return os.path.abspath(output_file)
