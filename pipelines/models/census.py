"""Census income (UCI Adult): the seed's wide_deep model as a spec of the shared pipeline."""

from __future__ import annotations

from model_fns import binary_metrics
from pipelines import spec
from preprocessing import census

SPEC = spec.register(spec.ModelSpec(
    name='census',
    dataset=census.DATASET,
    # The raw UCI format as it is: see preprocessing.census.parse_line.
    example_gen=spec.text_line_example_gen('preprocessing.census.parse_line'),
    schema_file=spec.curated_schema('census'),
    preprocessing_fn='preprocessing.census.preprocessing_fn',
    # Scaling and vocabulary lookups are cheaper per batch in the Trainer than writing the
    # transformed examples and reading them back (README, "Figures behind the defaults").
    materialize_transform=False,
    task='model_fns.census.CensusTask',
    # The plain-TFX workload of ../shared/docs/design.md: 2,000 steps of 256 (~16 epochs).
    train_steps=2000,
    batch_size=256,
    evaluation=spec.EvalSpec(
        label_key=census.LABEL_KEY,
        # Accuracy, precision, recall and calibration (a number, mean prediction / mean label, and
        # its two terms) derived from the calibration histogram AUC builds, instead of TFMA's two
        # further per-example combiners (model_fns.binary_metrics: the same numbers, a third less
        # Evaluator time; README, "Figures behind the defaults"). No TFMA CalibrationPlot: its
        # 10,000-bucket plots per slice cost more than the histogram they would repeat.
        # AUC is TFMA's, NaN instead of 0 on a one-class split (binary_metrics.HistogramAUC).
        metrics=('ExampleCount',) + binary_metrics.metric_configs(
            'auc', 'binary_accuracy', 'precision', 'recall', 'calibration', 'mean_label',
            'mean_prediction'),
        # The seed's bar: accuracy > 0.83 (official/wide_deep README), and no regression. EvalSpec
        # adds the binary guard: both classes in the eval split (label_classes >= 2).
        thresholds=(spec.Threshold('binary_accuracy', lower_bound=0.83),),
        slice_features=census.SLICE_FEATURES,
        summary_metrics={'accuracy': 'binary_accuracy', 'auc': 'auc', 'precision': 'precision',
                         'recall': 'recall', 'calibration': 'calibration',
                         'example_count': 'example_count', 'label_classes': 'label_classes'}),
    description='wide, deep and wide & deep classifiers of income > $50K on UCI Adult'))
