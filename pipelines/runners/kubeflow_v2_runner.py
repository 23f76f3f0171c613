"""`tfx` CLI runner file, vertex engine: the model's pipeline as a Kubeflow Pipelines v2 spec.

  export OFFICIAL_TFX_MODEL=census OFFICIAL_TFX_FLAGS='--image=IMAGE --pipeline_root=gs://B/root
    --train_data=gs://B/census/adult.data --eval_data=gs://B/census/adult.test
    --beam_runner=dataflow --project=P --region=us-central1 --temp_location=gs://B/tmp'
  tfx pipeline create --engine=vertex --pipeline_path=pipelines/runners/kubeflow_v2_runner.py \
      --build_image   # or an image built from this checkout beforehand
  tfx run create --engine=vertex --pipeline_name=census --project=P --region=us-central1

`official-tfx compile census ...` writes the same spec without the `tfx` CLI. Every component runs
in IMAGE, which must have this package installed; data, pipeline root and pushed model are remote
(pipelines/engines.py checks it).
"""

from pipelines import engines, settings

if __name__ == '__main__':
  engines.compile_kubeflow_v2(engines.parse_environment(), settings.FLAGS.output_file, settings.FLAGS.image)
