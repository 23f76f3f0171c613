"""The offline HTML report of a run, which is also the pushed model's model card.

`write_report(output_dir)` reads the last pipeline run of `output_dir` back from its ML Metadata
store, its artifacts and its `run_summary.json`, and writes `<output_dir>/report.html`: one
self-contained file (inline CSS, charts as inline SVG, no script, no font or image fetched from
anywhere) that shows

- the run: model, model type, the settings known (the summary, the Trainer's `custom_config` and
  `train_args`), the data files with their row ranges, each stage's time and cache state;
- the data: TFDV statistics per split and feature (StatisticsGen's `Split-<name>/FeatureStats.pb`)
  with a small histogram each, and ExampleValidator's anomalies (`Split-<name>/SchemaDiff.pb`);
- training: loss and the logged metrics per epoch from the Trainer's TensorBoard event files;
- evaluation: every TFMA metric overall and per slice, the blessing thresholds beside the
  candidate's (and the baseline's) values, and the task's pictures where the pipeline computed
  their data (TFMA plots), or a sentence saying they were not computed;
- the decision: blessed or not and which threshold failed (TFMA's ValidationResult), the pushed
  model's path and serving signatures (read from saved_model.pb without loading the model).

It is laid out as a model card after Mitchell et al. (2019), "Model Cards for Model Reporting"
(FAT* '19, arXiv:1810.03993): model details, intended use, factors, metrics, evaluation data,
training data, quantitative analyses, ethical considerations, caveats and recommendations. When
the run pushed a model, a copy is written beside it as `<pushed model>/assets.extra/
model_card.html` (TF Serving ignores `assets.extra`).
"""

from __future__ import annotations

import base64
import datetime
import glob
import importlib
import json
import math
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jinja2
import markupsafe
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from pipelines import history
from pipelines import metadata_store
from pipelines import report_svg
from pipelines import spec as spec_lib

REPORT_FILE = 'report.html'
MODEL_CARD_FILE = 'model_card.html'
ASSETS_EXTRA = 'assets.extra'
TEMPLATE = 'report.html.j2'
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'templates')
MAX_TOP_VALUES = 5  # of a string feature, in the statistics table
MAX_TRAINING_POINTS = 400  # per series; longer series are thinned evenly

# What the project knows about each dataset's use and risks (model card: intended use, ethical
# considerations), keyed by the spec name's prefix. Written for this project, not quoted.
_CARD_NOTES: Dict[str, Dict[str, str]] = {
    'census': {
        'use': 'A reference implementation of wide, deep and wide & deep classifiers on tabular '
               'data: benchmarking, teaching and testing the pipeline. Predicts whether a '
               'person\'s income exceeds $50K a year from 1994 US census attributes.',
        'out_of_scope': 'Decisions about real people (credit, hiring, housing, benefits): the '
                        'data is from 1994, US-only, and the label encodes historical pay gaps.',
        'ethics': 'The features include sex, race, marital status and native country, which are '
                  'protected attributes in many jurisdictions; the evaluation slices by sex and '
                  'race so that gaps between groups show, but a model trained on this data will '
                  'reproduce the correlations of 1994 US society.',
    },
    'higgs': {
        'use': 'Boosted trees separating a Higgs-boson signal from background in Monte Carlo '
               'simulated collisions; a benchmark of gradient boosting at scale.',
        'out_of_scope': 'Physics conclusions: the data is simulated and the model is a benchmark.',
        'ethics': 'No personal data; the risks are those of over-reading a benchmark figure.',
    },
    'movielens': {
        'use': 'Neural collaborative filtering (NeuMF) ranking movies for a user from implicit '
               'feedback; a benchmark of recommender training and ranking metrics.',
        'out_of_scope': 'Production recommendations without fairness review: the model favours '
                        'items with many ratings and knows nothing of users outside the data.',
        'ethics': 'Ratings are pseudonymous personal data from MovieLens volunteers; '
                  'recommenders can narrow what users see (popularity bias, feedback loops).',
    },
    'mnist': {
        'use': 'The classic handwritten digit classifier: a smoke test and teaching example.',
        'out_of_scope': 'Reading real documents: centred 28x28 grey digits are not handwriting '
                        'in the wild.',
        'ethics': 'Digits written by US Census Bureau employees and high-school students; no '
                  'labels about people.',
    },
    'cifar10': {
        'use': 'A small-image classifier over 10 object classes; a benchmark of image pipelines.',
        'out_of_scope': 'Recognising objects in real photographs at other resolutions.',
        'ethics': 'Images scraped from the web (80 Million Tiny Images); some classes may carry '
                  'collection biases.',
    },
    'imagenet': {
        'use': 'An ImageNet (ILSVRC-2012) classifier over 1,000 classes; a benchmark of large '
               'image models.',
        'out_of_scope': 'Classifying people or making decisions about them.',
        'ethics': 'ImageNet images were collected from the web without their subjects\' consent; '
                  'studies have found demographic skew and offensive labels in its person '
                  'categories.',
    },
    'mrpc': {
        'use': 'A BERT paraphrase classifier (Microsoft Research Paraphrase Corpus); a fine-tuning '
               'benchmark.',
        'out_of_scope': 'Judging the meaning of text outside news sentences in English.',
        'ethics': 'News text; the pretrained encoder carries the biases of its web pretraining '
                  'corpus.',
    },
    'wmt': {
        'use': 'A Transformer translation model (WMT news), evaluated by BLEU; a benchmark of '
               'sequence-to-sequence training.',
        'out_of_scope': 'Translation where errors matter (medical, legal) without human review.',
        'ethics': 'Machine translation is known to impose gender stereotypes on '
                  'gender-ambiguous words; BLEU does not measure adequacy or harm.',
    },
}
_GENERIC_NOTES = {
    'use': 'A reference model of the TensorFlow official models, trained by a TFX pipeline.',
    'out_of_scope': 'Uses the evaluation below does not cover.',
    'ethics': 'Not reviewed for this model.',
}


def _notes(model: str) -> Dict[str, str]:
  for prefix, notes in _CARD_NOTES.items():
    if model == prefix or model.startswith(prefix + '-'):
      return notes
  return _GENERIC_NOTES


class ReportError(RuntimeError):
  """The output directory holds no pipeline run to report on."""


# ---------------------------------------------------------------------------------------------
# Reading the run.


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _spec_facts(model: str) -> Dict[str, Any]:
  """What the registry says of `model`: description, task, dataset and citation, evaluation
  spec; the keys are None for a model this installation does not know."""
  facts: Dict[str, Any] = {'description': None, 'task': None, 'dataset': None, 'citation': None,
                           'slice_features': [], 'evaluation': None, 'summary_metrics': {}}
  spec = _find_spec(model)
  if spec is None:
    return facts
  facts.update(description=spec.description, task=spec.task, dataset=spec.dataset.name,
               citation=spec.dataset.citation, evaluation=spec.evaluation,
               slice_features=list(spec.evaluation.slice_features),
               summary_metrics=dict(spec.evaluation.summary_metrics))
  return facts


def _find_spec(model: str):
  """The registered ModelSpec of `model`, or None. Imports the spec module named like the model
  first (`pipelines.models.movielens` for `movielens-1m`), which spares importing every model's."""
  module = f'{spec_lib.MODELS_PACKAGE}.{model.split("-")[0]}'
  if module in spec_lib.spec_modules():
    try:
      importlib.import_module(module)
    except Exception:  # pylint: disable=broad-except
      pass
  if model in spec_lib._SPECS:  # pylint: disable=protected-access
    return spec_lib._SPECS[model]  # pylint: disable=protected-access
  try:
    return spec_lib.get(model)
  except Exception:  # pylint: disable=broad-except
    return None


def _pick_run(store, model: Optional[str], run_id: Optional[str] = None):
  """The pipeline run context to report on: `run_id`'s, else the last run (of `model`)."""
  contexts = history.run_contexts(store)
  if run_id is not None:
    matches = [c for c in contexts if c.name == run_id]
    if not matches:
      raise ReportError(f'no pipeline run {run_id!r}; runs: '
                        f'{", ".join(c.name for c in contexts) or "none"}')
    return matches[0]
  if model:
    contexts = [c for c in contexts
                if any(p == model for p, _, _ in history.run_executions(store, c))]
  if not contexts:
    raise ReportError('no pipeline run recorded in the ML Metadata store')
  return contexts[-1]


def _features_stats(path: str) -> Dict[str, Any]:
  """One split's statistics (FeatureStats.pb) as table rows."""
  stats = tfdv.load_stats_binary(path)
  dataset = stats.datasets[0] if stats.datasets else statistics_pb2.DatasetFeatureStatistics()
  rows = []
  for feature in dataset.features:
    name = '.'.join(feature.path.step) or feature.name
    kind = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
    row: Dict[str, Any] = {'name': name, 'type': kind, 'count': None, 'missing': None,
                           'missing_pct': None, 'numeric': False, 'mean': None, 'std': None,
                           'min': None, 'max': None, 'zeros': None, 'unique': None, 'top': [],
                           'avg_length': None, 'histogram': ''}
    which = feature.WhichOneof('stats')
    common = None
    if which == 'num_stats':
      num = feature.num_stats
      common = num.common_stats
      row.update(numeric=True, mean=num.mean, std=num.std_dev, min=num.min, max=num.max,
                 zeros=num.num_zeros)
      standard = [h for h in num.histograms if h.type == h.STANDARD] or list(num.histograms)
      if standard:
        buckets = [(b.low_value, b.high_value, b.sample_count) for b in standard[0].buckets]
        row['histogram'] = report_svg.histogram(buckets, title=f'{name} histogram')
    elif which == 'string_stats':
      strings = feature.string_stats
      common = strings.common_stats
      row.update(unique=strings.unique, avg_length=strings.avg_length,
                 top=[(v.value, v.frequency) for v in strings.top_values[:MAX_TOP_VALUES]])
      items = [(v.value, v.frequency) for v in strings.top_values[:MAX_TOP_VALUES]]
      row['histogram'] = report_svg.bars(items, width=240, bar_height=11,
                                         title=f'{name} top values')
    elif which == 'bytes_stats':
      common = feature.bytes_stats.common_stats
      row.update(unique=feature.bytes_stats.unique,
                 avg_length=feature.bytes_stats.avg_num_bytes)
    elif which == 'struct_stats':
      common = feature.struct_stats.common_stats
    if common is not None:
      total = common.num_non_missing + common.num_missing
      row.update(count=common.num_non_missing, missing=common.num_missing,
                 missing_pct=(100.0 * common.num_missing / total) if total else None)
    rows.append(row)
  return {'num_examples': dataset.num_examples, 'features': rows, 'file': path}


def _split_dirs(uri: str) -> List[Tuple[str, str]]:
  """(split, folder) of an artifact laid out as `Split-<name>/`, sorted with train first."""
  if not uri or not os.path.isdir(uri):
    return []
  splits = [(name[len('Split-'):], os.path.join(uri, name)) for name in os.listdir(uri)
            if name.startswith('Split-')]
  return sorted(splits, key=lambda s: (s[0] != 'train', s[0]))


def _per_split(store, execution, key: str, file_name: str,
               read: Callable[[str], Any]) -> Dict[str, Any]:
  """{split: read(<split folder>/file_name)} over the `key` output artifacts of `execution` (a
  StatisticsGen's statistics, an ExampleValidator's anomalies); {} when it did not run."""
  found: Dict[str, Any] = {}
  if execution is None:
    return found
  for artifact in history.artifacts_by_key(store, execution.id).get(key, []):
    for split, folder in _split_dirs(artifact.uri):
      path = os.path.join(folder, file_name)
      if os.path.isfile(path):
        found[split] = read(path)
  return found


def _anomalies(path: str) -> List[Dict[str, Any]]:
  """ExampleValidator's anomalies of one split (SchemaDiff.pb, an Anomalies proto)."""
  with open(path, 'rb') as f:
    anomalies = anomalies_pb2.Anomalies.FromString(f.read())
  found = []
  infos = list(anomalies.anomaly_info.items())
  if anomalies.HasField('dataset_anomaly_info'):
    infos.append(('(dataset)', anomalies.dataset_anomaly_info))
  for feature, info in sorted(infos):
    found.append({'feature': feature,
                  'severity': anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                  'short': info.short_description,
                  'description': info.description,
                  'reasons': [r.description or r.short_description for r in info.reason]})
  return found


def _scalar(value) -> Optional[float]:
  """A TensorBoard summary value as a float: `simple_value` (TF1 style) or a scalar tensor (the
  TF2 summary API Keras' TensorBoard callback uses); None for anything else."""
  if value.HasField('simple_value'):
    return float(value.simple_value)
  if value.HasField('tensor'):
    array = tf.make_ndarray(value.tensor)
    if array.ndim == 0 and array.dtype.kind in 'fiu':
      return float(array)
  return None


def read_event_scalars(log_dir: str) -> Dict[str, Dict[str, List[Tuple[int, float]]]]:
  """Scalar summaries under a TensorBoard log directory.

  Args:
    log_dir: a Trainer's `model_run` folder; Keras' TensorBoard callback writes the training
      run to `train/` and the validation run to `validation/`, each with `events.out.tfevents.*`
      files.

  Returns:
    {tag: {run: [(step, value), ...]}}, run being the event file's folder relative to
    `log_dir` ('.' for the top), steps in order. Tags keep Keras' names (`epoch_loss`,
    `epoch_auc`, `epoch_learning_rate`, `evaluation_loss_vs_iterations`, ...). Non-scalar
    summaries (histograms, graphs, images) are left out.
  """
  scalars: Dict[str, Dict[str, Dict[int, float]]] = {}
  files = sorted(glob.glob(os.path.join(log_dir, '**', 'events.out.tfevents.*'), recursive=True))
  for path in files:
    run = os.path.relpath(os.path.dirname(path), log_dir)
    for event in tf.compat.v1.train.summary_iterator(path):
      if not event.HasField('summary'):
        continue
      for value in event.summary.value:
        number = _scalar(value)
        if number is not None:
          scalars.setdefault(value.tag, {}).setdefault(run, {})[int(event.step)] = number
  return {tag: {run: sorted(points.items()) for run, points in runs.items()}
          for tag, runs in sorted(scalars.items())}


def _thin(points: Sequence[Tuple[int, float]]) -> List[Tuple[int, float]]:
  if len(points) <= MAX_TRAINING_POINTS:
    return list(points)
  step = len(points) / MAX_TRAINING_POINTS
  kept = [points[int(i * step)] for i in range(MAX_TRAINING_POINTS)]
  return kept + [points[-1]] if kept[-1] != points[-1] else kept


def _training(store, trainer_execution) -> Dict[str, Any]:
  """Training curves and settings of a Trainer execution."""
  outputs = history.artifacts_by_key(store, trainer_execution.id)
  result: Dict[str, Any] = {'log_dir': None, 'charts': [], 'final': {}, 'tags': [], 'note': None}
  runs = outputs.get('model_run') or []
  if not runs or not runs[0].uri or not os.path.isdir(runs[0].uri):
    result['note'] = 'The Trainer wrote no Model Run folder (no TensorBoard logs).'
    return result
  log_dir = runs[0].uri
  result['log_dir'] = log_dir
  final = _read_json(os.path.join(log_dir, 'eval_metrics.json'))
  if isinstance(final, dict):
    result['final'] = {k: v for k, v in final.items() if isinstance(v, (int, float))}
  scalars = read_event_scalars(log_dir)
  result['tags'] = list(scalars)
  for tag, runs_of_tag in scalars.items():
    label = tag[len('epoch_'):] if tag.startswith('epoch_') else tag
    x_label = 'epoch' if tag.startswith('epoch_') else 'step'
    series = {('log' if run == '.' else run): _thin(points)
              for run, points in runs_of_tag.items()}
    chart = report_svg.line_chart(series, x_label=x_label, y_label=label, title=label,
                                  width=340, height=180)
    if chart:
      result['charts'].append({'tag': tag, 'label': label, 'svg': chart,
                               'last': {run: points[-1][1] for run, points in series.items()},
                               'points': sum(len(p) for p in series.values())})
  if not result['charts']:
    result['note'] = (f'No scalar summaries in {log_dir}: this task logs no per-epoch metrics '
                      '(e.g. TF Decision Forests trains in one pass).')
  return result


def _metric_label(key) -> str:
  """A TFMA MetricKey as text: its name, with its sub key (class id, k, top k) if any."""
  name = key.name
  if key.HasField('sub_key'):
    sub = key.sub_key
    for field in ('class_id', 'k', 'top_k'):
      if sub.HasField(field):
        name += f' ({field} {getattr(sub, field).value})'
  return name


def _slice_name(slice_key) -> str:
  """A TFMA SliceKey as `column=value[,column=value]`; '' for the overall slice (the names
  of pipelines.metadata.evaluation_metrics and run_summary.json's `slices`)."""
  parts = []
  for k in slice_key.single_slice_keys:
    if k.HasField('bytes_value'):
      value = k.bytes_value.decode()
    elif k.HasField('int64_value'):
      value = k.int64_value
    else:
      value = k.float_value
    parts.append(f'{k.column}={value}')
  return ','.join(parts)


def read_evaluation(uri: str) -> Dict[str, Dict[str, Dict[str, float]]]:
  """Every scalar TFMA metric of an Evaluator output, per slice and model.

  Args:
    uri: the Evaluator's `evaluation` artifact folder (tfma.load_metrics reads its
      `metrics-*` files).

  Returns:
    {slice: {metric: {'candidate' | 'baseline' | 'diff': value}}}, slice '' being the overall
    slice; `diff` is TFMA's candidate minus baseline. A model with no name (an evaluation
    without a baseline) counts as the candidate. Non-scalar values (confusion matrices, arrays)
    are left out; NaN stays NaN.
  """
  result: Dict[str, Dict[str, Dict[str, float]]] = {}
  for metrics_for_slice in tfma.load_metrics(uri):
    values = result.setdefault(_slice_name(metrics_for_slice.slice_key), {})
    for kv in metrics_for_slice.metric_keys_and_values:
      if not kv.value.HasField('double_value'):
        continue
      model = 'diff' if kv.key.is_diff else (kv.key.model_name or 'candidate')
      values.setdefault(_metric_label(kv.key), {})[model] = kv.value.double_value.value
  return result


_LOWER_IS_BETTER = 1  # tfma.MetricDirection.LOWER_IS_BETTER (config.proto)


def _threshold_text(threshold, part: Optional[str] = None) -> str:
  """A TFMA MetricThreshold as text, e.g. `>= 0.83; no lower than the baseline`; `part`
  `value` or `change` for that half only."""
  parts = []
  value = threshold.value_threshold
  if value.HasField('lower_bound') and part != 'change':
    parts.append(f'>= {report_svg.fmt(value.lower_bound.value)}')
  if value.HasField('upper_bound') and part != 'change':
    parts.append(f'<= {report_svg.fmt(value.upper_bound.value)}')
  if threshold.HasField('change_threshold') and part != 'value':
    change = threshold.change_threshold
    higher = change.direction != _LOWER_IS_BETTER
    if change.HasField('absolute'):
      tolerance = abs(change.absolute.value)
      parts.append(('no lower than the baseline' if higher else 'no higher than the baseline')
                   + (f' by more than {report_svg.fmt(tolerance)}' if tolerance > 1e-9 else ''))
    if change.HasField('relative'):
      parts.append(f'relative change vs. baseline within {report_svg.fmt(change.relative.value)}')
  return '; '.join(parts) or 'any value'


def thresholds_of(eval_config) -> List[Dict[str, Any]]:
  """The blessing thresholds of a TFMA EvalConfig: [{metric, slice, text, lower_bound,
  upper_bound, change}], from each metric's `threshold` and `per_slice_thresholds`."""
  found = []
  for spec in eval_config.metrics_specs:
    for config in spec.metrics:
      try:
        name = spec_lib.metric_name(config)
      except Exception:  # pylint: disable=broad-except  # a metric class this process lacks
        name = json.loads(config.config).get('name') if config.config else config.class_name
      pairs = []
      if config.HasField('threshold'):
        pairs.append(('overall and every slice', config.threshold))
      for per_slice in config.per_slice_thresholds:
        slices = [_spec_text(s) for s in per_slice.slicing_specs] or ['every slice']
        pairs.append((', '.join(slices), per_slice.threshold))
      for where, threshold in pairs:
        value = threshold.value_threshold
        found.append({
            'metric': name, 'slice': where, 'text': _threshold_text(threshold),
            'lower_bound': value.lower_bound.value if value.HasField('lower_bound') else None,
            'upper_bound': value.upper_bound.value if value.HasField('upper_bound') else None,
            'change': threshold.HasField('change_threshold')})
    for name, threshold in spec.thresholds.items():
      value = threshold.value_threshold
      found.append({
          'metric': name, 'slice': 'overall and every slice', 'text': _threshold_text(threshold),
          'lower_bound': value.lower_bound.value if value.HasField('lower_bound') else None,
          'upper_bound': value.upper_bound.value if value.HasField('upper_bound') else None,
          'change': threshold.HasField('change_threshold')})
  return found


def _spec_text(slicing_spec) -> str:
  if not slicing_spec.feature_keys and not slicing_spec.feature_values:
    return 'overall'
  keys = list(slicing_spec.feature_keys) + [f'{k}={v}' for k, v in
                                             slicing_spec.feature_values.items()]
  return 'by ' + ', '.join(keys)


def _eval_config(evaluator_execution, spec_evaluation):
  """The Evaluator's EvalConfig: its `eval_config` exec property, else the spec's; None."""
  text = history.property_value(evaluator_execution.custom_properties, 'eval_config') \
      if evaluator_execution is not None else None
  if text:
    try:
      return json_format.Parse(text, tfma.EvalConfig()), 'the Evaluator\'s eval_config'
    except json_format.ParseError:
      pass
  if spec_evaluation is not None:
    return spec_evaluation.eval_config(), 'the spec\'s EvalSpec'
  return None, None


def _plots(uri: str) -> Dict[str, Any]:
  """Pictures from TFMA's plots (calibration histogram, confusion matrices), overall slice."""
  charts = []
  kinds = []
  try:
    plots = list(tfma.load_plots(uri))
  except Exception:  # pylint: disable=broad-except  # no plots-* files
    plots = []
  for plots_for_slice in plots:
    if _slice_name(plots_for_slice.slice_key):
      continue
    for kv in plots_for_slice.plot_keys_and_values:
      if kv.key.model_name not in ('', 'candidate'):
        continue
      value = kv.value
      if value.HasField('calibration_histogram_buckets'):
        kinds.append('calibration')
        points = []
        for bucket in value.calibration_histogram_buckets.buckets:
          weight = bucket.num_weighted_examples.value
          if weight > 0:
            points.append((bucket.total_weighted_refined_prediction.value / weight,
                           bucket.total_weighted_label.value / weight))
        charts.append(('Calibration (reliability): mean label per prediction bucket',
                       report_svg.line_chart({'model': points}, x_label='mean prediction',
                                             y_label='observed positive rate',
                                             unit_square=True, diagonal=True,
                                             title='calibration')))
      if value.HasField('confusion_matrix_at_thresholds'):
        kinds.append('confusion_matrix_at_thresholds')
        roc, pr = [], []
        for m in value.confusion_matrix_at_thresholds.matrices:
          tp, fp, tn, fn = m.true_positives, m.false_positives, m.true_negatives, \
              m.false_negatives
          if tp + fn > 0 and fp + tn > 0:
            roc.append((fp / (fp + tn), tp / (tp + fn)))
          if tp + fp > 0 and tp + fn > 0:
            pr.append((tp / (tp + fn), tp / (tp + fp)))
        charts.append(('ROC curve', report_svg.line_chart(
            {'model': sorted(roc)}, x_label='false positive rate', y_label='true positive rate',
            unit_square=True, diagonal=True, markers=False, title='ROC')))
        charts.append(('Precision-recall curve', report_svg.line_chart(
            {'model': sorted(pr)}, x_label='recall', y_label='precision', unit_square=True,
            markers=False, title='precision / recall')))
      if value.HasField('multi_class_confusion_matrix_at_thresholds'):
        kinds.append('multi_class_confusion_matrix')
        matrices = value.multi_class_confusion_matrix_at_thresholds.matrices
        if matrices:
          entries = matrices[0].entries
          classes = sorted({e.actual_class_id for e in entries} |
                           {e.predicted_class_id for e in entries})
          index = {c: i for i, c in enumerate(classes)}
          grid = [[0.0] * len(classes) for _ in classes]
          for e in entries:
            grid[index[e.actual_class_id]][index[e.predicted_class_id]] += e.num_weighted_examples
          charts.append(('Confusion matrix (rows: actual class, columns: predicted)',
                         report_svg.heatmap(grid, classes, classes, title='confusion matrix')))
  return {'charts': [(t, c) for t, c in charts if c], 'kinds': kinds}


def task_kind(metric_names: Sequence[str]) -> str:
  """`binary`, `multiclass`, `ranking`, `translation` or `other`, from the TFMA metric names."""
  names = set(metric_names)
  if any(n.startswith(('hit_rate', 'ndcg')) for n in names):
    return 'ranking'
  if any('bleu' in n.lower() for n in names):
    return 'translation'
  if names & {'sparse_categorical_accuracy', 'categorical_accuracy'}:
    return 'multiclass'
  if names & {'auc', 'binary_accuracy', 'AUC', 'precision', 'recall'}:
    return 'binary'
  return 'other'


_MISSING_PICTURES = {
    'binary': ('The pipeline\'s EvalConfig computes no TFMA plots (no CalibrationPlot or '
               'ConfusionMatrixPlot), so no calibration diagram, ROC or precision-recall curve '
               'can be drawn from this run; the calibration ratio and its two terms, where '
               'computed, are in the metrics above. Add those plots to the spec\'s metrics to '
               'get the curves.'),
    'multiclass': ('The pipeline\'s EvalConfig computes no MultiClassConfusionMatrixPlot, so no '
                   'confusion matrix can be shown for this run.'),
}


def _signatures(model_dir: str) -> Dict[str, Any]:
  """The serving signatures of a SavedModel, from its saved_model.pb (the model is not loaded).

  Returns:
    {'path', 'tags', 'signatures': [{name, method, inputs: [{name, dtype, shape}], outputs}]};
    shapes as lists with None for an unknown dimension, or None for an unknown rank. `error`
    instead when there is no readable saved_model.pb.
  """
  path = os.path.join(model_dir, 'saved_model.pb')
  if not os.path.isfile(path):
    return {'path': path, 'error': 'no saved_model.pb', 'signatures': [], 'tags': []}
  with open(path, 'rb') as f:
    saved = saved_model_pb2.SavedModel.FromString(f.read())

  def tensors(mapping):
    found = []
    for name, info in sorted(mapping.items()):
      shape = None if info.tensor_shape.unknown_rank else [
          None if d.size < 0 else d.size for d in info.tensor_shape.dim]
      dtype = types_pb2.DataType.Name(info.dtype)
      found.append({'name': name, 'dtype': dtype[3:].lower() if dtype.startswith('DT_') else dtype,
                    'shape': shape})
    return found

  signatures, tags = [], []
  for graph in saved.meta_graphs:
    tags.append(list(graph.meta_info_def.tags))
    for name, signature in sorted(graph.signature_def.items()):
      if name.startswith('__'):
        continue  # __saved_model_init_op
      signatures.append({'name': name, 'method': signature.method_name,
                         'inputs': tensors(signature.inputs),
                         'outputs': tensors(signature.outputs)})
  return {'path': model_dir, 'tags': tags, 'signatures': signatures}


def predict_request(model_dir: str, examples: Sequence[bytes],
                    signature: str = 'serving_default') -> Dict[str, Any]:
  """The body of a TF Serving REST `:predict` request for a SavedModel whose signature takes
  serialized tf.Examples (one string input), in the row format: {"signature_name": signature,
  "instances": [{<input name>: {"b64": base64 of the example}}, ...]} (TF Serving's REST API
  carries binary strings as `{"b64": ...}`).

  Args:
    model_dir: the SavedModel (a pushed version folder); its signature's input name is read
      from saved_model.pb.
    examples: serialized tf.Examples of raw features.
    signature: the signature to call.

  Raises:
    ValueError: the model has no such signature, or it does not take exactly one string input.
  """
  found = next((s for s in _signatures(model_dir)['signatures'] if s['name'] == signature), None)
  if found is None:
    raise ValueError(f'{model_dir} has no signature {signature!r}')
  if len(found['inputs']) != 1 or found['inputs'][0]['dtype'] != 'string':
    raise ValueError(f'{signature} does not take one string input: {found["inputs"]}')
  name = found['inputs'][0]['name']
  return {'signature_name': signature,
          'instances': [{name: {'b64': base64.b64encode(e).decode('ascii')}} for e in examples]}


def _shape_text(shape) -> str:
  if shape is None:
    return 'unknown rank'
  return '[' + ', '.join('batch' if (i == 0 and d is None) else ('?' if d is None else str(d))
                         for i, d in enumerate(shape)) + ']'


def _validation(uri: str) -> Dict[str, Any]:
  """TFMA's ValidationResult of an Evaluator output: ok, failures and missing slices."""
  try:
    result = tfma.load_validation_result(uri)
  except Exception as e:  # pylint: disable=broad-except  # no validations file
    return {'available': False, 'ok': None, 'failures': [], 'missing_slices': [],
            'error': str(e)}
  failures = []
  for per_slice in result.metric_validations_per_slice:
    for failure in per_slice.failures:
      failures.append({'slice': _slice_name(per_slice.slice_key) or 'overall',
                       'metric': _metric_label(failure.metric_key),
                       'model': failure.metric_key.model_name or 'candidate',
                       'is_diff': failure.metric_key.is_diff,
                       'threshold': _threshold_text(
                           failure.metric_threshold,
                           'change' if failure.metric_key.is_diff else 'value'),
                       'value': _failure_value(failure.metric_value),
                       'message': failure.message})
  return {'available': True, 'ok': bool(result.validation_ok), 'failures': failures,
          'missing_slices': [_spec_text(s) for s in result.missing_slices],
          'error': None}


def _failure_value(value) -> Optional[float]:
  if value.HasField('double_value'):
    return value.double_value.value
  return None


def _settings_rows(summary: Mapping[str, Any], executions) -> List[Tuple[str, str, str]]:
  """(source, setting, value) rows: the summary's, then each stage's exec properties that carry
  the run's settings (Trainer custom_config / train_args / eval_args, Transform custom_config and
  preprocessing_fn, ExampleGen's input and row ranges)."""
  rows = []
  for key in ('model', 'model_type', 'wall_seconds', 'error', 'partial_run', 'metadata'):
    if summary.get(key) is not None:
      rows.append(('run_summary.json', key, _text(summary[key])))
  wanted = {'Trainer': ('custom_config', 'train_args', 'eval_args', 'run_fn'),
            'Transform': ('preprocessing_fn', 'custom_config', 'force_tf_compat_v1',
                          'disable_statistics'),
            'Evaluator': ('module_path',)}
  for _, node, execution in executions:
    names = wanted.get(node)
    if node.endswith('ExampleGen') and node != 'ImportSchemaGen':
      names = ('input_base', 'input_config', 'custom_config')
    for name in names or ():
      value = history.json_property(execution, name)
      if isinstance(value, dict) and isinstance(value.get(name), dict) and 'value' in value[name]:
        value = value[name]['value']  # ExampleGen's custom_config: a packed Any of a Struct
      if value in (None, '', {}, []):
        continue
      if isinstance(value, dict) and name == 'custom_config' and node == 'Trainer':
        for key, item in value.items():
          if key == 'hparams' and isinstance(item, dict):
            for hparam, hvalue in item.items():
              rows.append((f'{node} custom_config', f'hparams.{hparam}', _text(hvalue)))
          else:
            rows.append((f'{node} custom_config', key, _text(item)))
      else:
        rows.append((node, name, _text(value)))
  return rows


def _text(value: Any) -> str:
  if isinstance(value, (dict, list)):
    return json.dumps(value, sort_keys=True)
  if isinstance(value, float):
    return report_svg.fmt(value, 6)
  return str(value)


def _rows_text(first: Optional[int], count: Optional[int]) -> str:
  first = first or 0
  if count is None:
    return f'rows {first:,} to the end' if first else 'all rows'
  return f'rows {first:,} to {first + count - 1:,} ({count:,} rows)'


def _current_summary(output_dir: str, context, model: str, store) -> Dict[str, Any]:
  """`<output_dir>/run_summary.json` if it is the summary of the run `context`: its `run_id`
  names the run, or (a summary without one) `context` is the store's last run, the summary was
  written after it started and is of the same model. {} otherwise (a stale summary of an earlier
  run while this one goes on, or the summary of a later run)."""
  path = os.path.join(output_dir, history.SUMMARY_FILE)
  summary = _read_json(path) or {}
  if not summary or summary.get('model') not in (None, model):
    return {}
  if history.run_contexts(store)[-1].id != context.id:
    return {}  # an earlier run: the file is a later run's
  if summary.get('run_id') is not None:
    return summary if summary['run_id'] == context.name else {}
  if os.path.getmtime(path) * 1000 < context.create_time_since_epoch:
    return {}
  return summary


def collect(output_dir: str, model: Optional[str] = None, run_id: Optional[str] = None,
            connection: Optional[metadata_store.Where] = None) -> Dict[str, Any]:
  """Everything the report shows, read from `output_dir`'s last pipeline run.

  Args:
    output_dir: a run's output directory (its ML Metadata store: metadata.sqlite or the database
      recorded in metadata_connection.pbtxt; pipeline_root, run_summary.json).
    model: report the last run of this pipeline (default: the last run of any).
    run_id: report this run (a pipeline run context name, see pipelines.history) instead.
    connection: the store to read (a SQLite path or a ConnectionConfig); default the
      directory's own.

  Returns:
    A dict of plain values and SVG strings (see report.html.j2 for its use): `run`, `summary`,
    `spec`, `notes`, `stages`, `settings`, `data_files`, `statistics`, `anomalies`, `training`,
    `evaluation`, `decision`, `caveats`.

  Raises:
    FileNotFoundError: `output_dir` holds no run (no metadata.sqlite, no recorded store).
    metadata_store.MetadataConnectionError: its store cannot be opened (one line).
    ReportError: the store records no pipeline run (or none named `run_id`).
  """
  store = history.store_of(output_dir, connection)
  context = _pick_run(store, model, run_id)
  executions = history.run_executions(store, context)
  run = history.describe_run(store, context, output_dir)
  model = model or run['model']
  summary = history.stored_summary(output_dir, context.name)
  summary_source = f'runs/{context.name}/run_summary.json'
  if summary is None:
    summary, summary_source = (_current_summary(output_dir, context, model, store),
                               history.SUMMARY_FILE)
  if not summary:
    summary_source = None
  facts = _spec_facts(model)
  by_node = {}
  for _, node, execution in executions:
    by_node[node] = execution  # the last execution of a node in the run

  # Stages: the summary's (the runner's own account), else MLMD's.
  stage_rows = []
  for stage in run['stages']:
    stage_rows.append({'name': stage['name'], 'state': stage['state'].lower(),
                       'seconds': stage['seconds'], 'cached': stage['cached'],
                       'execution_id': stage['execution_id']})

  data_files = []
  for split, data in (summary.get('data') or {}).items():
    data_files.append({'split': split, 'file': data.get('file'), 'sha256': data.get('sha256'),
                       'rows': _rows_text(data.get('first_row'), data.get('num_rows')),
                       'examples': data.get('examples')})
  malformed = summary.get('malformed') or {}

  # Statistics and anomalies.
  statistics = _per_split(store, by_node.get('StatisticsGen'), 'statistics', 'FeatureStats.pb',
                          _features_stats)
  anomalies = _per_split(store, by_node.get('ExampleValidator'), 'anomalies', 'SchemaDiff.pb',
                         _anomalies)
  schema_file = None
  validator = by_node.get('ExampleValidator')
  if validator is not None:
    for artifact in history.artifacts_by_key(store, validator.id, inputs=True).get('schema', []):
      schema_file = os.path.join(artifact.uri, 'schema.pbtxt')

  training = (_training(store, by_node['Trainer']) if 'Trainer' in by_node else
              {'charts': [], 'final': {}, 'note': 'The Trainer did not run in this run.',
               'log_dir': None, 'tags': []})

  evaluation = _evaluation(store, by_node.get('Evaluator'), facts, summary)
  decision = _decision(store, by_node, evaluation, summary)
  caveats = _caveats(summary, run, statistics, evaluation, training)
  return {
      'generated': datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S'),
      'output_dir': os.path.abspath(output_dir),
      'run': run, 'run_id': context.name, 'model': model,
      'model_type': summary.get('model_type') or run['model_type'],
      'summary': summary, 'summary_source': summary_source, 'spec': facts, 'notes': _notes(model),
      'stages': stage_rows, 'settings': _settings_rows(summary, executions),
      'data_files': data_files, 'malformed': malformed, 'statistics': statistics,
      'anomalies': anomalies, 'schema_file': schema_file, 'training': training,
      'evaluation': evaluation, 'decision': decision, 'caveats': caveats,
      'error': summary.get('error') or run.get('error'),
  }


def _evaluation(store, evaluator, facts, summary) -> Dict[str, Any]:
  result: Dict[str, Any] = {'available': False, 'uri': None, 'overall': [], 'slices': [],
                            'slice_metrics': [], 'thresholds': [], 'thresholds_source': None,
                            'has_baseline': False, 'kind': 'other', 'pictures': [],
                            'picture_note': None, 'slice_charts': [], 'summary_metrics': []}
  eval_config, source = _eval_config(evaluator, facts.get('evaluation'))
  if eval_config is not None:
    result['thresholds'] = thresholds_of(eval_config)
    result['thresholds_source'] = source
  if evaluator is None:
    return result
  outputs = history.artifacts_by_key(store, evaluator.id)
  evaluations = outputs.get('evaluation') or []
  if not evaluations or not os.path.isdir(evaluations[0].uri or ''):
    return result
  uri = evaluations[0].uri
  metrics = read_evaluation(uri)
  result.update(available=True, uri=uri)
  overall = metrics.get('', {})
  names = sorted(overall)
  result['has_baseline'] = any('baseline' in v for v in overall.values())
  by_metric = {}
  for t in result['thresholds']:
    by_metric.setdefault(t['metric'], []).append(t)
  summary_names = {tfma: name for name, tfma in facts.get('summary_metrics', {}).items()}
  for name in names:
    values = overall[name]
    result['overall'].append({
        'metric': name, 'summary_name': summary_names.get(name),
        'candidate': values.get('candidate'), 'baseline': values.get('baseline'),
        'diff': values.get('diff'),
        'thresholds': [t['text'] for t in by_metric.get(name, [])]})
  slice_names = sorted(k for k in metrics if k)
  result['slice_metrics'] = names
  result['slices'] = [{'slice': s, 'values': {m: metrics[s].get(m, {}).get('candidate')
                                              for m in names}} for s in slice_names]
  result['kind'] = task_kind(names)
  plots = _plots(uri)
  result['pictures'] = plots['charts']
  if not plots['charts']:
    result['picture_note'] = _MISSING_PICTURES.get(result['kind'])
  # The task's headline metrics per slice, with the blessing bar: the thresholded ones, and
  # BLEU / HR@10 / NDCG@10 / AUC where computed.
  headline = [t['metric'] for t in result['thresholds'] if t['metric'] in overall
              and t['metric'] != 'label_classes']
  for extra in ('auc', 'hit_rate_at_10', 'ndcg_at_10', 'bleu'):
    if extra in overall and extra not in headline:
      headline.append(extra)
  for name in dict.fromkeys(headline):
    items = [('overall', overall[name].get('candidate'))]
    if 'baseline' in overall[name]:
      items.append(('overall (baseline)', overall[name]['baseline']))
    items += [(s, metrics[s].get(name, {}).get('candidate')) for s in slice_names]
    bound = next((t['lower_bound'] for t in by_metric.get(name, [])
                  if t['lower_bound'] is not None), None)
    values = [v for _, v in items if v is not None and math.isfinite(v)]
    value_range = (0.0, 1.0) if values and all(0 <= v <= 1 for v in values) else None
    svg = report_svg.bars(items, width=380, reference=bound,
                          reference_label=f'bar {report_svg.fmt(bound, 3)}' if bound is not None
                          else '', title=name, value_range=value_range)
    if svg:
      result['slice_charts'].append({'metric': name, 'svg': svg})
  result['summary_metrics'] = [
      {'name': name, 'tfma': tfma, 'value': (summary.get('metrics') or {}).get(name)}
      for name, tfma in facts.get('summary_metrics', {}).items()]
  return result


def _decision(store, by_node, evaluation, summary) -> Dict[str, Any]:
  decision: Dict[str, Any] = {'evaluated': 'Evaluator' in by_node, 'blessed': None,
                              'validation': None, 'pushed_model': None, 'pushed_version': None,
                              'signatures': None, 'signatures_of': None, 'reasons': []}
  evaluator = by_node.get('Evaluator')
  if evaluator is not None:
    outputs = history.artifacts_by_key(store, evaluator.id)
    for artifact in outputs.get('blessing', []):
      blessed = history.property_value(artifact.custom_properties, 'blessed')
      if blessed is not None:
        decision['blessed'] = bool(blessed)
    if evaluation.get('uri'):
      decision['validation'] = _validation(evaluation['uri'])
      for failure in decision['validation']['failures']:
        what = 'change vs. baseline of ' if failure['is_diff'] else ''
        decision['reasons'].append(
            f'{what}{failure["metric"]} on the {failure["slice"]} slice = '
            f'{report_svg.fmt(failure["value"])}, required {failure["threshold"]}')
      for missing in decision['validation']['missing_slices']:
        decision['reasons'].append(f'slice {missing} missing from the evaluation')
  if decision['blessed'] is None and summary.get('blessed') is not None and evaluator is not None:
    decision['blessed'] = bool(summary['blessed'])
  pusher = by_node.get('Pusher')
  if pusher is not None:
    for artifact in history.artifacts_by_key(store, pusher.id).get('pushed_model', []):
      if history.property_value(artifact.custom_properties, 'pushed'):
        decision['pushed_model'] = history.property_value(artifact.custom_properties,
                                                          'pushed_destination')
        decision['pushed_version'] = history.property_value(artifact.custom_properties,
                                                            'pushed_version')
  decision['pushed_model'] = decision['pushed_model'] or summary.get('pushed_model')
  model_dir, of = None, None
  if decision['pushed_model'] and os.path.isdir(decision['pushed_model']):
    model_dir, of = decision['pushed_model'], 'the pushed model'
  elif 'Trainer' in by_node:
    for artifact in history.artifacts_by_key(store, by_node['Trainer'].id).get('model', []):
      candidate = os.path.join(artifact.uri, 'Format-Serving')
      if os.path.isdir(candidate):
        model_dir, of = candidate, 'the trained (not pushed) model'
  if model_dir:
    signatures = _signatures(model_dir)
    for signature in signatures['signatures']:
      for tensor in signature['inputs'] + signature['outputs']:
        tensor['shape_text'] = _shape_text(tensor['shape'])
    decision['signatures'], decision['signatures_of'] = signatures, of
  return decision


def _caveats(summary, run, statistics, evaluation, training) -> List[str]:
  """What a reader of the numbers should know, from the run itself."""
  caveats = []
  for split, data in (summary.get('data') or {}).items():
    if data.get('num_rows') is not None or (data.get('first_row') or 0):
      rows = _rows_text(data.get('first_row'), data.get('num_rows'))
      caveats.append(f'The {split} split read only {rows} of '
                     f'{os.path.basename(str(data.get("file")))}: figures are not comparable '
                     'with results on the full data.')
  for split, entry in (summary.get('malformed') or {}).items():
    if entry.get('count'):
      caveats.append(f'{entry["count"]:,} malformed row(s) of the {split} split were left out.')
  settings = run.get('settings') or {}
  if settings.get('train_steps') is not None:
    caveats.append(f'Trained for {settings["train_steps"]:,} steps of '
                   f'{settings.get("batch_size", "?")} examples.')
  examples = (statistics.get('eval') or {}).get('num_examples')
  if examples is not None and examples < 5000:
    caveats.append(f'The evaluation has {examples:,} examples: small slices have wide '
                   'confidence intervals, and small differences between runs may be noise.')
  if evaluation.get('has_baseline') is False and evaluation.get('available'):
    caveats.append('No earlier blessed model existed: the blessing compared no baseline.')
  if summary.get('partial_run'):
    caveats.append('This was a partial run: stages outside it kept the previous run\'s outputs.')
  if summary.get('error'):
    caveats.append(f'The run did not finish: {summary["error"]}')
  return caveats


# ---------------------------------------------------------------------------------------------
# Rendering.


def _environment() -> jinja2.Environment:
  env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
                           autoescape=jinja2.select_autoescape(['html', 'j2']),
                           undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
  env.filters['fmt'] = report_svg.fmt
  env.filters['svg'] = jinja2.pass_context(lambda _, text: _markup(text))
  return env


def _markup(text: str):
  return markupsafe.Markup(text or '')


def render(report: Mapping[str, Any]) -> str:
  """The report's HTML from `collect`'s dict."""
  return _environment().get_template(TEMPLATE).render(**report)


def write_report(output_dir: str, model: Optional[str] = None, model_card: bool = True,
                 connection: Optional[metadata_store.Where] = None) -> str:
  """Writes `<output_dir>/report.html` on the last pipeline run there, and returns its path.

  Args:
    output_dir: a run's output directory.
    model: the pipeline to report on when the store holds several (default: the last run's).
    model_card: also write the report as `<pushed model>/assets.extra/model_card.html` when the
      run pushed a model (see `write_model_card`).
    connection: the store to read (default: the directory's own; see `collect`).

  Raises:
    FileNotFoundError: `output_dir` holds no run.
    metadata_store.MetadataConnectionError: its store cannot be opened (one line).
    ReportError: the store records no pipeline run.
  """
  report = collect(output_dir, model, connection=connection)
  page = render(report)
  path = os.path.join(output_dir, REPORT_FILE)
  _write_text(path, page)
  if model_card and report['decision']['pushed_model']:
    _write_card(report['decision']['pushed_model'], page)
  return path


def write_model_card(output_dir: str, model: Optional[str] = None,
                     connection: Optional[metadata_store.Where] = None) -> Optional[str]:
  """Writes the report of the last run as `assets.extra/model_card.html` beside the SavedModel
  it pushed, and returns that path; None when the run pushed nothing.

  Raises:
    FileNotFoundError: `output_dir` holds no run.
    metadata_store.MetadataConnectionError: its store cannot be opened (one line).
    ReportError: the store records no pipeline run.
  """
  report = collect(output_dir, model, connection=connection)
  pushed = report['decision']['pushed_model']
  if not pushed:
    return None
  return _write_card(pushed, render(report))


def _write_card(model_dir: str, page: str) -> str:
  folder = os.path.join(model_dir, ASSETS_EXTRA)
  tf.io.gfile.makedirs(folder)
  path = os.path.join(folder, MODEL_CARD_FILE)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(page)
  return path


def _write_text(path: str, text: str) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, path)



def main(argv: Sequence[str]) -> int:
  """`python -m pipelines.report OUTPUT_DIR [RUN_ID]` writes the report (of the last run, or of
  RUN_ID) and prints its path; exit status 1 when the directory holds no run."""
  if len(argv) not in (1, 2):
    print('usage: python -m pipelines.report OUTPUT_DIR [RUN_ID]', file=sys.stderr)
    return 2
  try:
    if len(argv) == 2:
      page = render(collect(argv[0], run_id=argv[1]))
      path = os.path.join(argv[0], f'report-{argv[1].replace(":", "")}.html')
      _write_text(path, page)
    else:
      path = write_report(argv[0])
  except (FileNotFoundError, ReportError, metadata_store.MetadataConnectionError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
