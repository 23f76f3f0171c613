"""The offline run report (pipelines.report) on a real census run, the stock tools on the same
artifacts (the README's "Looking at a run" commands), and the report's SVG charts.

The e2e tests share the two runs of tests/report_runs.py (run 2 blessed and pushed, run 1 not).
"""

from __future__ import annotations

import base64
import glob
import gzip
import json
import os
import re
import subprocess
import sys

import pytest

from pipelines import history, report, report_svg
from tests import helpers, report_runs

BIN = os.path.dirname(sys.executable)


# ---------------------------------------------------------------------------------------------
# Unit tests of the charts (no pipeline).


def test_histogram_draws_one_bar_per_bucket_scaled_to_the_largest():
  svg = report_svg.histogram([(0, 1, 5), (1, 2, 10), (2, 3, 0)], width=90, height=40)
  heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
  assert heights == [20.0, 40.0, 0.0]
  assert svg.startswith('<svg ') and svg.endswith('</svg>') and 'http' not in svg


def test_charts_escape_labels_and_skip_undefined_values():
  svg = report_svg.bars([('<b>&', 0.5), ('nan', float('nan'))])
  assert '&lt;b&gt;&amp;' in svg and '<b>' not in svg
  assert len(re.findall(r'<rect ', svg)) == 1
  assert report_svg.line_chart({'loss': [(0, float('nan'))]}) == ''
  assert report_svg.histogram([]) == ''


def test_fmt_writes_integers_whole_and_undefined_as_n_a():
  assert report_svg.fmt(16281.0) == '16,281'
  assert report_svg.fmt(0.823823823) == '0.8238'
  assert report_svg.fmt(None) == 'n/a' and report_svg.fmt(float('nan')) == 'n/a'


def test_line_chart_places_points_inside_the_plot():
  svg = report_svg.line_chart({'train': [(0, 1.0), (1, 0.5), (2, 0.25)]}, width=200, height=100)
  xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)]
  assert len(xs) == 3 and xs == sorted(xs) and 48 <= xs[0] < xs[-1] <= 190


def test_heatmap_writes_every_count():
  svg = report_svg.heatmap([[5, 1], [2, 7]], ['0', '1'], ['0', '1'])
  assert [t for t in re.findall(r'font-size="9">([^<]+)<', svg)] == ['5', '1', '2', '7']


def test_tfma_plots_become_calibration_roc_pr_and_confusion_pictures(tmp_path):
  """A plots file as TFMA writes it (CalibrationPlot, ConfusionMatrixPlot and
  MultiClassConfusionMatrixPlot on the overall slice) -> the report's pictures."""
  import tensorflow as tf
  from tensorflow_model_analysis.proto import metrics_for_slice_pb2 as pb
  plots = pb.PlotsForSlice()
  calibration = plots.plot_keys_and_values.add()
  calibration.key.name = 'calibration_plot'
  for low, weight, label, prediction in ((0.0, 10, 1, 1.5), (0.5, 10, 8, 7.5)):
    bucket = calibration.value.calibration_histogram_buckets.buckets.add(
        lower_threshold_inclusive=low, upper_threshold_exclusive=low + 0.5)
    bucket.num_weighted_examples.value = weight
    bucket.total_weighted_label.value = label
    bucket.total_weighted_refined_prediction.value = prediction
  roc = plots.plot_keys_and_values.add()
  roc.key.name = 'confusion_matrix_plot'
  for tp, fp, tn, fn in ((10, 10, 0, 0), (8, 2, 8, 2), (0, 0, 10, 10)):
    roc.value.confusion_matrix_at_thresholds.matrices.add(
        true_positives=tp, false_positives=fp, true_negatives=tn, false_negatives=fn)
  matrix = plots.plot_keys_and_values.add()
  matrix.key.name = 'multi_class_confusion_matrix_plot'
  entries = matrix.value.multi_class_confusion_matrix_at_thresholds.matrices.add().entries
  for actual, predicted, count in ((0, 0, 9), (0, 1, 1), (1, 1, 7), (1, 0, 3)):
    entries.add(actual_class_id=actual, predicted_class_id=predicted,
                num_weighted_examples=count)
  with tf.io.TFRecordWriter(str(tmp_path / 'plots-00000-of-00001.tfrecord')) as writer:
    writer.write(plots.SerializeToString())
  pictures = report._plots(str(tmp_path))  # pylint: disable=protected-access
  titles = [title for title, _ in pictures['charts']]
  assert titles[0].startswith('Calibration') and titles[1:3] == ['ROC curve',
                                                                 'Precision-recall curve']
  assert titles[3].startswith('Confusion matrix')
  # ROC: (FPR, TPR) = (0.2, 0.8) between the corners; PR: one point (recall 0.8, precision 0.8).
  assert len(re.findall(r'<circle ', pictures['charts'][0][1])) == 2
  heatmap = pictures['charts'][3][1]
  assert re.findall(r'font-size="9">([^<]+)<', heatmap) == ['9', '1', '3', '7']


# ---------------------------------------------------------------------------------------------
# The report of a real run.


@pytest.fixture(scope='module')
def runs(data_root):
  return report_runs.two_census_runs(data_root)


@pytest.fixture(scope='module')
def written(runs):
  output_dir, summaries = runs
  path = report.write_report(output_dir)
  with open(path, encoding='utf-8') as f:
    return output_dir, summaries[-1], path, f.read()


@pytest.mark.e2e
def test_report_is_one_file_that_fetches_nothing(written):
  output_dir, _, path, page = written
  assert path == os.path.join(output_dir, 'report.html')
  assert 'http://' not in page and 'https://' not in page
  assert not re.search(r'<(script|link|img|iframe|object|embed)\b', page, re.I)
  assert not re.search(r'url\(|@import|\bsrc\s*=', page, re.I)
  assert all(h.startswith('#') for h in re.findall(r'href="([^"]*)"', page))
  assert page.count('<svg ') >= 20  # histograms, training curves, slice charts


@pytest.mark.e2e
def test_numbers_shown_are_the_run_summarys(written):
  _, summary, _, page = written
  cells = helpers.report_cells(page)
  tfma_names = {'accuracy': 'binary_accuracy', 'auc': 'auc', 'example_count': 'example_count',
                'precision': 'precision', 'recall': 'recall'}
  for name, tfma_name in tfma_names.items():
    expected = report_svg.fmt(summary['metrics'][name])
    assert cells[('card-metrics', None, tfma_name)] == expected, name
    assert cells[('overall', None, tfma_name)] == expected, name
  assert float(cells[('overall', None, 'binary_accuracy')]) == pytest.approx(
      summary['metrics']['accuracy'], abs=5e-4)
  # adult.test's rows 0-299 hold its `|1x3 Cross validator` line: 299 examples.
  assert summary['metrics']['example_count'] == summary['data']['eval']['examples'] == 299
  assert {'sex=Female', 'sex=Male', 'race=White'} <= set(summary['slices'])
  for slice_name, values in summary['slices'].items():
    for metric, value in values.items():
      assert cells[('slice-table', slice_name, metric)] == report_svg.fmt(value), (slice_name,
                                                                                   metric)
  assert 'eval: 299 examples' in page and 'train: 600 examples' in page
  for split in ('train', 'eval'):  # the data files' content digests, as the summary records them
    assert re.fullmatch('[0-9a-f]{64}', summary['data'][split]['sha256'])
    assert summary['data'][split]['sha256'] in page


@pytest.mark.e2e
def test_statistics_training_slices_and_blessing_sections_are_there(written):
  output_dir, summary, _, page = written
  for split in ('train', 'eval'):
    table = re.search(rf'<table class="stats" data-split="{split}">(.*?)</table>', page, re.S)
    assert table, split
    for feature in ('age', 'education', 'sex', 'income_bracket'):
      assert f'<td>{feature}</td>' in table.group(1)
  assert re.search(r'<p><b>eval</b>: <span class="pass">none</span>', page)  # no anomaly
  assert re.search(r'data-tag="epoch_loss"><svg ', page)
  assert 'id="slice-table"' in page and 'sex=Female' in page
  assert summary['blessed'] is True and 'id="verdict">blessed<' in page
  # The thresholds the Evaluator ran with (its eval_config), not the registry's 0.83.
  assert '&gt;= 0.5; no lower than the baseline' in page and '&gt;= 0.83' not in page
  assert f'id="pushed-path">{summary["pushed_model"]}<' in page
  assert re.search(r'<td>input</td><td>examples</td><td>string</td><td>\[batch\]</td>', page)
  assert re.search(r'<td>output</td><td>probabilities</td><td>float</td><td>\[batch, 1\]</td>',
                   page)
  assert 'Becker &amp; Kohavi (1996)' in page  # the dataset's citation, in the model card
  for heading in ('Model details', 'Intended use', 'Factors', 'Metrics', 'Evaluation data',
                  'Training data', 'Quantitative analyses', 'Ethical considerations',
                  'Caveats and recommendations'):
    assert f'<h3>{heading}</h3>' in page
  assert 'No earlier blessed model existed' in page  # run 1 was not blessed: no baseline
  assert os.path.isfile(os.path.join(output_dir, 'metadata.sqlite'))


@pytest.mark.e2e
def test_model_card_is_written_beside_the_pushed_model(written):
  _, summary, _, page = written
  card = os.path.join(summary['pushed_model'], 'assets.extra', 'model_card.html')
  with open(card, encoding='utf-8') as f:
    assert f.read() == page
  assert report.write_model_card(written[0]) == card


@pytest.mark.e2e
def test_report_of_the_unblessed_run_names_the_failed_threshold(runs):
  output_dir, summaries = runs
  first = history.list_runs(output_dir)[0]
  page = report.render(report.collect(output_dir, run_id=first['run_id']))
  assert summaries[0]['blessed'] is False and summaries[0]['pushed_model'] is None
  accuracy = report_svg.fmt(summaries[0]['metrics']['accuracy'])
  assert 'id="verdict">not blessed<' in page
  assert (f'<li class="fail">binary_accuracy on the overall slice = {accuracy}, required '
          '&gt;= 0.99</li>') in page
  assert 'Nothing was pushed' in page
  assert 'Serving signatures of the trained (not pushed) model' in page
  with pytest.raises(report.ReportError, match='no pipeline run'):
    report.collect(output_dir, run_id='no-such-run')


@pytest.mark.e2e
def test_screenshot_in_headless_chromium(written, tmp_path):
  helpers.check_report_screenshot(written[2], tmp_path / 'report.png')


# ---------------------------------------------------------------------------------------------
# Stock tools on the run's artifacts: the README's "Looking at a run" commands.


def _stage_uri(output_dir, run_id, node, key):
  store = history.metadata.open_store(history.metadata_path(output_dir))
  context = next(c for c in history.run_contexts(store) if c.name == run_id)
  for _, name, execution in history.run_executions(store, context):
    if name == node:
      return history.artifacts_by_key(store, execution.id)[key][0].uri
  raise KeyError(node)


@pytest.fixture(scope='module')
def last_run_id(runs):
  return history.list_runs(runs[0])[-1]['run_id']


@pytest.mark.e2e
def test_tfma_loads_the_evaluator_output(runs, last_run_id):
  import tensorflow_model_analysis as tfma
  output_dir, summaries = runs
  uri = _stage_uri(output_dir, last_run_id, 'Evaluator', 'evaluation')
  assert uri == sorted(glob.glob(os.path.join(output_dir, 'pipeline_root/Evaluator/evaluation/*')),
                       key=lambda p: int(os.path.basename(p)))[-1]
  result = tfma.load_eval_result(uri)
  overall = dict(result.get_metrics_for_slice())  # the overall slice: {metric: {'doubleValue'}}
  assert overall['binary_accuracy']['doubleValue'] == pytest.approx(
      summaries[-1]['metrics']['accuracy'])
  assert tfma.load_validation_result(uri).validation_ok is True


@pytest.mark.e2e
def test_tfdv_reads_statistics_gens_binary_stats(runs, last_run_id):
  import tensorflow_data_validation as tfdv
  output_dir, _ = runs
  uri = _stage_uri(output_dir, last_run_id, 'StatisticsGen', 'statistics')
  stats = tfdv.load_stats_binary(os.path.join(uri, 'Split-eval', 'FeatureStats.pb'))
  assert stats.datasets[0].num_examples == 299  # rows 0-299 of adult.test, less its junk line
  # load_statistics reads a TFRecord or a text proto, not StatisticsGen's binary proto.
  with pytest.raises(Exception):
    tfdv.load_statistics(os.path.join(uri, 'Split-eval', 'FeatureStats.pb'))


@pytest.mark.e2e
def test_tensorboard_reads_the_trainers_event_files(runs, last_run_id):
  from tensorboard.backend.event_processing import event_accumulator
  output_dir, _ = runs
  log_dir = _stage_uri(output_dir, last_run_id, 'Trainer', 'model_run')
  accumulator = event_accumulator.EventAccumulator(os.path.join(log_dir, 'train'))
  accumulator.Reload()
  assert {'epoch_loss', 'epoch_auc'} <= set(accumulator.Tags()['tensors'])
  scalars = report.read_event_scalars(log_dir)
  assert len(scalars['epoch_loss']['train']) == len(accumulator.Tensors('epoch_loss'))


@pytest.mark.e2e
def test_saved_model_cli_shows_the_serving_signature(runs):
  _, summaries = runs
  shown = subprocess.run([os.path.join(BIN, 'saved_model_cli'), 'show', '--dir',
                          summaries[-1]['pushed_model'], '--tag_set', 'serve',
                          '--signature_def', 'serving_default'],
                         capture_output=True, text=True, timeout=300, check=True).stdout
  assert "inputs['examples']" in shown and 'DT_STRING' in shown
  assert "outputs['probabilities']" in shown and 'DT_FLOAT' in shown


# The README's request body command: raw adult.test lines -> TF Serving's REST :predict body.
PREDICT_BODY = '''
import gzip, json, sys
from pipelines import report
from preprocessing import census
from components.text_example_gen import to_example
lines = gzip.open(sys.argv[2], 'rt').read().split('\\n')[1:4]
rows = [census.parse_line(l) for l in lines]
examples = [to_example({k: v for k, v in r.items() if k != census.LABEL_KEY}).SerializeToString()
            for r in rows]
print(json.dumps(report.predict_request(sys.argv[1], examples)))
'''


@pytest.mark.e2e
def test_predict_request_body_is_what_the_model_serves(runs, data_root):
  import tensorflow as tf
  _, summaries = runs
  pushed = summaries[-1]['pushed_model']
  body = json.loads(subprocess.run(
      [sys.executable, '-c', PREDICT_BODY, pushed,
       os.path.join(data_root, 'census', 'adult.test.gz')],
      capture_output=True, text=True, timeout=300, check=True).stdout)
  assert body['signature_name'] == 'serving_default' and len(body['instances']) == 3
  # What TF Serving does with it: decode each b64 string and call the signature on the batch.
  examples = [base64.b64decode(i['examples']['b64']) for i in body['instances']]
  serve = tf.saved_model.load(pushed).signatures['serving_default']
  probabilities = serve(examples=tf.constant(examples))['probabilities'].numpy()
  assert probabilities.shape == (3, 1) and ((probabilities > 0) & (probabilities < 1)).all()
  with gzip.open(os.path.join(data_root, 'census', 'adult.test.gz'), 'rt') as f:
    assert f.readline().startswith('|1x3')  # the line the command skips


def test_module_command_fails_cleanly_on_a_directory_without_runs(tmp_path, capsys):
  assert report.main([str(tmp_path)]) == 1
  assert 'holds no run' in capsys.readouterr().err
  assert report.main([]) == 2
