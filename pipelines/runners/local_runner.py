"""`tfx` CLI runner file, local engine: the model's pipeline on TFX's LocalDagRunner.

  export OFFICIAL_TFX_MODEL=census OFFICIAL_TFX_FLAGS='--data_root=../shared/data'
  tfx pipeline create --engine=local --pipeline_path=pipelines/runners/local_runner.py
  tfx run create --engine=local --pipeline_name=census

`tfx pipeline create` only records the pipeline (name and root); `tfx run create` runs this file,
which reads the same two variables again (pipelines/engines.py). `python local_runner.py` runs it
directly.
"""

from tfx import v1 as tfx

from pipelines import engines

if __name__ == '__main__':
  tfx.orchestration.LocalDagRunner().run(engines.pipeline_from_environment())
