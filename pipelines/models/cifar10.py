"""CIFAR-10: the seed's ResNet-56 (or another CIFAR ResNet) as a spec of the shared pipeline.

ExampleGen reads the canonical python batches, or the JPEG image folders that are the offline
fallback (components.image_example_gen); Transform decodes the images in-graph
(preprocessing.cifar10.preprocessing_fn); the Trainer runs model_fns.image_classification.
CifarResNetTask (augmentation in its input pipeline only); the Evaluator computes top-1 accuracy
with TFMA, overall and per class. `official-tfx predict` reads the python batches (the archive's
test_batch, or an extracted batch file) and 32x32 image files or folders of them (class folders
named as CLASS_NAMES with --with_labels).
"""

from __future__ import annotations

from components.image_example_gen import ImageExampleGen, is_archive
from pipelines import predict_readers, spec
from preprocessing import cifar10


def image_example_gen(input_base, patterns, max_malformed_fraction, row_ranges, files):
  """The spec's ExampleGenFactory: an ImageExampleGen over the python archive's members or over
  the image folders, whichever the splits name."""
  del files  # no side file
  archive = {split: cifar10.ARCHIVE_MEMBERS[split] for split, pattern in patterns.items()
             if is_archive(pattern)}
  return ImageExampleGen(input_base=input_base, splits=patterns, class_names=cifar10.CLASS_NAMES,
                         max_malformed_fraction=max_malformed_fraction, row_ranges=row_ranges,
                         archive_members=archive)


SPEC = spec.register(spec.ModelSpec(
    name='cifar10',
    dataset=cifar10.DATASET,
    example_gen=image_example_gen,
    schema_file=spec.curated_schema('cifar10'),
    preprocessing_fn='preprocessing.cifar10.preprocessing_fn',
    task='model_fns.image_classification.CifarResNetTask',
    # A CPU budget: 1,000 steps of the seed's batch 128 (2.6 epochs), under the seed's schedule
    # scaled to the budget (model_fns.image_classification). The seed's 182 epochs are
    # --train_steps=71094.
    train_steps=1000,
    batch_size=128,
    evaluation=spec.multiclass_evaluation(
        cifar10.LABEL_KEY,
        # Bar 0.45 top-1 on the 10,000 test images (chance: 0.1), and no regression: under what
        # the default CPU budget reaches (benchmarks/images.py; README, "Figures behind the
        # defaults"). The seed's full schedule reaches 0.929-0.938 with ResNet-56 (design.md):
        # raise the bar with the budget.
        thresholds=(spec.Threshold('sparse_categorical_accuracy', lower_bound=0.45),),
        slice_features=cifar10.SLICE_FEATURES),
    description='the seed\'s ResNet-56 on CIFAR-10 (python batches, or the JPEG folders offline)',
    # A corrupt image in a curated dataset means a damaged copy: fail on the first one.
    max_malformed_fraction=0.0,
    predict_reader=predict_readers.AnyOf(readers=(
        predict_readers.CifarBatchReader(archive_members=cifar10.ARCHIVE_MEMBERS['eval'],
                                         num_classes=cifar10.NUM_CLASSES),
        predict_readers.ImageReader(class_names=cifar10.CLASS_NAMES,
                                    image_size=(cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE))))))
