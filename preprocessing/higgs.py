"""UCI HIGGS: canonical file, the seed's row ranges and the raw-format parser.

Source: Whiteson, D. (2014), HIGGS, UCI Machine Learning Repository, doi:10.24432/C5V312, CC BY 4.0;
Baldi, Sadowski & Whiteson (2014), "Searching for exotic particles in high-energy physics with deep
learning", Nature Communications 5:4308. Raw format: `HIGGS.csv.gz`, 11,000,000 lines, no header,
29 comma-separated numbers per line: the label (1 signal, 0 background) then 21 low-level kinematic
features and 7 high-level features derived from them, in the order of `FEATURES`. The canonical file
prints every value, the label included, with `%.18e` (`1.000000000000000000e+00`); the samples in
../shared/data/higgs print about 10 decimals. Both parse the same.

The seed (tensorflow/models official/boosted_trees/train_higgs.py) trains on the first 1,000,000
rows and evaluates on the 1,000,000 rows that start at row 10,000,000: `DATASET.row_ranges`.

No tf.Transform here: gradient boosted trees split on raw thresholds, so scaling, bucketizing or
vocabularies would change nothing the model learns, and the 28 features are complete floats. The
pipeline skips Transform (see `pipelines.models.higgs`) and the model reads the raw examples.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Union

from preprocessing import datasets

# The seed's split of HIGGS.csv (official/boosted_trees/train_higgs.py flags train_start,
# train_count, eval_start, eval_count).
TRAIN_ROWS = (0, 1_000_000)
EVAL_ROWS = (10_000_000, 1_000_000)

DATASET = datasets.register(datasets.Dataset(
    name='higgs',
    files=(
        datasets.DataFile(
            name='HIGGS.csv',
            url='https://archive.ics.uci.edu/ml/machine-learning-databases/00280/HIGGS.csv.gz',
            sha256=None,
            # SHA-256 of HIGGS.csv.gz as UCI serves it (2.8 GB), as recorded by public HIGGS
            # fetchers; the uncompressed checksum is not published and no full copy is here.
            gz_sha256='ea302c18164d4e3d916a1e2e83a9a8d07069fa6ebc7771e4c0540d54e593b698'),
        # Real samples in the same layout (sources in ../shared/data/README.md): 5,000 rows as
        # published in SpringerNLP/Chapter2 (data/higgs_test_5k.csv), and 10,984 rows of
        # sassoftware/sas-viya-workbench-examples (data/higgs.csv) with the header dropped and the
        # label moved first, which exists nowhere to download.
        datasets.DataFile(
            name='HIGGS.sample-5k.csv',
            url=('https://raw.githubusercontent.com/SpringerNLP/Chapter2/'
                 'a1399ca49d29c3b0c0ffef8620f7546abe5fe436/data/higgs_test_5k.csv'),
            sha256='ab729cb2a366684b490d7a7b465dfa6fd9b27da23a65afdac68268c998a64fd4',
            size=1_721_520),
        datasets.DataFile(
            name='HIGGS.sample-11k.csv', url=None,
            sha256='cd731aee080edc5f89eeaea5dd9508633b4be76d0e88f6068a9bd89f71d9c2d1',
            size=3_501_390),
    ),
    splits={'train': 'HIGGS.csv', 'eval': 'HIGGS.csv'},
    row_ranges={'train': TRAIN_ROWS, 'eval': EVAL_ROWS},
    sample_splits={'train': 'HIGGS.sample-11k.csv', 'eval': 'HIGGS.sample-5k.csv'},
    citation='Whiteson (2014), UCI HIGGS, doi:10.24432/C5V312, CC BY 4.0'))

LABEL_KEY = 'label'
LOW_LEVEL_FEATURES = (
    'lepton_pt', 'lepton_eta', 'lepton_phi', 'missing_energy_magnitude', 'missing_energy_phi',
    'jet1_pt', 'jet1_eta', 'jet1_phi', 'jet1_btag',
    'jet2_pt', 'jet2_eta', 'jet2_phi', 'jet2_btag',
    'jet3_pt', 'jet3_eta', 'jet3_phi', 'jet3_btag',
    'jet4_pt', 'jet4_eta', 'jet4_phi', 'jet4_btag')
HIGH_LEVEL_FEATURES = ('m_jj', 'm_jjj', 'm_lv', 'm_jlv', 'm_bb', 'm_wbb', 'm_wwbb')
FEATURES = LOW_LEVEL_FEATURES + HIGH_LEVEL_FEATURES
COLUMNS = (LABEL_KEY,) + FEATURES
# Other names a header line may give the label (UCI calls the first column the class label).
HEADER_ALIASES = {LABEL_KEY: ('class', 'target')}


def parse_line(line: str) -> Optional[Dict[str, Union[int, float]]]:
  """Parses one line of HIGGS.csv (or a sample in its layout).

  Args:
    line: the text of the line, without its line ending.

  Returns:
    None for a blank line; otherwise {'label': int 0 or 1, feature: float} for the 28 features.

  Raises:
    ValueError: the line does not have 29 comma-separated fields, a field is not a finite number
      (the message names the field and its text), or the label is not 0 or 1.
  """
  if not line.strip():
    return None
  fields = line.split(',')
  if len(fields) != len(COLUMNS):
    raise ValueError(f'expected {len(COLUMNS)} comma-separated fields (label and '
                     f'{len(FEATURES)} features), found {len(fields)}')
  row: Dict[str, Union[int, float]] = {}
  for name, text in zip(COLUMNS, fields):
    try:
      value = float(text)
    except ValueError:
      raise ValueError(f'field {name}: expected a number, got {text.strip()!r}') from None
    if not math.isfinite(value):
      raise ValueError(f'field {name}: expected a finite number, got {text.strip()!r}')
    row[name] = value
  if row[LABEL_KEY] not in (0.0, 1.0):
    raise ValueError(f'field {LABEL_KEY}: expected 0 or 1, got {fields[0].strip()!r}')
  row[LABEL_KEY] = int(row[LABEL_KEY])
  return row


# The header line of an export, in the canonical column order (TextLineExampleGen skips it as a
# file's first line; UCI's `jet 1 b-tag` spells `jet1_btag` leniently).
parse_line.columns = tuple((name, *HEADER_ALIASES.get(name, ())) for name in COLUMNS)
