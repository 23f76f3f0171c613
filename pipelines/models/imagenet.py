"""ImageNet: ResNet-50 v1.5 as a spec of the shared pipeline, without a Transform step.

ExampleGen reads the class folders (and a flat validation folder with its labels file) in label
order from synsets.txt (components.image_example_gen); there is no Transform (decoded images would
be 600 KB each): the Trainer runs model_fns.image_classification.ImagenetResNetTask on the raw
examples, decoding and cropping in its input pipeline; the exported model decodes and crops JPEG
bytes itself. The Evaluator computes top-1 and top-5 accuracy with TFMA.
"""

from __future__ import annotations

from components.image_example_gen import ImageExampleGen
from pipelines import predict_readers, spec
from preprocessing import imagenet

VALIDATION_LABELS = 'synset_labels.txt'  # imagenet_to_gcs.py's labels of the flat validation set
SYNSETS_FILE = 'synsets_file'  # the example_gen_files setting (and flag) of synsets.txt


def image_example_gen(input_base, patterns, max_malformed_fraction, row_ranges, files):
  """The spec's ExampleGenFactory: an ImageExampleGen in the label order of synsets.txt (resolved
  and verified before the pipeline is built: `example_gen_files`); a flat validation folder is
  labelled by synset_labels.txt beside it (read in the ExampleGen, so that a remote data root
  needs no access here)."""
  return ImageExampleGen(input_base=input_base, splits=patterns,
                         class_names=imagenet.class_names(files[SYNSETS_FILE]),
                         max_malformed_fraction=max_malformed_fraction, row_ranges=row_ranges,
                         labels_files={'eval': VALIDATION_LABELS})


SPEC = spec.register(spec.ModelSpec(
    name='imagenet',
    dataset=imagenet.DATASET,
    example_gen=image_example_gen,
    schema_file=spec.curated_schema('imagenet'),
    preprocessing_fn=None,
    task='model_fns.image_classification.ImagenetResNetTask',
    # A CPU budget that proves the path on the 100-image sample (ResNet-50 trains at about 6
    # images/s on 2 cores): 20 steps of 32. The seed's 90 epochs on 8 GPUs are
    # --batch_size=256 --train_steps=450360.
    train_steps=20,
    batch_size=32,
    evaluation=spec.multiclass_evaluation(
        imagenet.LABEL_KEY, top5=True,
        # The full validation set: top-1 >= 0.75 and no regression (the seed's ResNet-50 reaches
        # 0.76-0.77 in 90 epochs, design.md).
        thresholds=(spec.Threshold('sparse_categorical_accuracy', lower_bound=0.75),)),
    reduced_data_evaluation=spec.multiclass_evaluation(
        imagenet.LABEL_KEY, top5=True,
        # The 100-image sample (one image per class, no held-out image) cannot measure accuracy:
        # its bar is that every image went through the exported model's serving signature.
        thresholds=(spec.Threshold('example_count', lower_bound=100, no_regression=False),)),
    description='ResNet-50 v1.5 on ImageNet (class folders; offline: the 100-image sample)',
    max_malformed_fraction=0.0,
    example_gen_files={SYNSETS_FILE: (imagenet.DATASET, imagenet.SYNSETS)},
    # `official-tfx predict`: JPEG (or other) images of any size, files or folders; with
    # --with_labels in wnid class folders (train's layout) or a flat folder with
    # synset_labels.txt beside it (validation's), labels in synsets.txt's order.
    predict_reader=predict_readers.ImageReader(
        class_names_file=SYNSETS_FILE, class_names_fn='preprocessing.imagenet.class_names',
        labels_file=VALIDATION_LABELS)))
