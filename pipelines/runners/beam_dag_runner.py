"""`tfx` CLI runner file, beam engine: the model's pipeline orchestrated as a Beam job.

  export OFFICIAL_TFX_MODEL=census OFFICIAL_TFX_FLAGS='--data_root=../shared/data'
  tfx pipeline create --engine=beam --pipeline_path=pipelines/runners/beam_dag_runner.py
  tfx run create --engine=beam --pipeline_name=census

TFX's BeamDagRunner turns the DAG itself into a Beam pipeline (one step per component), on the
DirectRunner here; the components' own Beam stages take `--beam_runner` and its options from
OFFICIAL_TFX_FLAGS as usual. Same ML Metadata and pipeline root as the local engine, so a run of
one is served from the cache of the other.
"""

from tfx.orchestration.beam import beam_dag_runner

from pipelines import engines

if __name__ == '__main__':
  beam_dag_runner.BeamDagRunner().run(engines.pipeline_from_environment())
