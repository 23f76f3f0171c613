"""Decoding Tensor2Tensor subword ids back to text (T2T's SubwordTextEncoder format).

T2T's `translate_ende_wmt32k` data (and ../shared/data/wmt/wmt32k) stores sentences as subword id
lists with a vocabulary file of one quoted subtoken per line (`'<pad>'` = 0, `'<EOS>'` = 1, then
e.g. `'fen_'`). The format, as T2T's `text_encoder.py` defines it:

- Text is split into tokens: maximal runs of alphanumeric characters (Unicode categories L* and N*)
  and maximal runs of other characters. A single space between two alphanumeric tokens is not
  kept; it is implied.
- Each token is escaped (`\\` -> `\\\\`, `_` -> `\\u`, a character outside the vocabulary's
  alphabet -> `\\<decimal code point>;`) and ends with `_`, then cut into subtokens.

Decoding reverses it: concatenate the subtokens, split at every `_` (the end of a token; an
escaped underscore is `\\u`), unescape each token, and join the tokens, putting back one space
between two consecutive alphanumeric tokens.
"""

from __future__ import annotations

import re
import unicodedata
from typing import List, Sequence

import tensorflow as tf

PAD_ID = 0
EOS_ID = 1
_UNESCAPE = re.compile(r'\\u|\\\\|\\([0-9]+);')


def _unescape(token: str) -> str:
  def replace(match):
    if match.group(1) is not None:
      try:
        return chr(int(match.group(1)))
      except (ValueError, OverflowError):
        return '\u3013'  # T2T's replacement for an invalid escape
    return '_' if match.group(0) == '\\u' else '\\'
  return _UNESCAPE.sub(replace, token)


def _is_alphanumeric(char: str) -> bool:
  return unicodedata.category(char)[0] in 'LN'


class SubwordDecoder:
  """Maps T2T subword ids to text.

  Args:
    subtokens: the vocabulary, subtoken i for id i (`<pad>`, `<EOS>` first).
  """

  def __init__(self, subtokens: Sequence[str]):
    self.subtokens = list(subtokens)

  @classmethod
  def from_file(cls, path: str) -> 'SubwordDecoder':
    """Reads a T2T vocabulary file (one subtoken per line, in single or double quotes).

    Raises:
      ValueError: a line is not a quoted subtoken (names the file and the line).
    """
    subtokens = []
    with tf.io.gfile.GFile(path, 'rb') as f:
      for number, raw in enumerate(f.read().decode('utf-8').split('\n'), start=1):
        line = raw.rstrip('\r')
        if not line:
          continue
        if len(line) < 2 or line[0] != line[-1] or line[0] not in '\'"':
          raise ValueError(f'{path}:{number}: expected a quoted subtoken, got {line[:40]!r}')
        subtokens.append(line[1:-1])
    return cls(subtokens)

  @property
  def vocab_size(self) -> int:
    return len(self.subtokens)

  def decode(self, ids: Sequence[int]) -> str:
    """The text of one sentence's ids; padding (0) and EOS (1) are dropped.

    Raises:
      ValueError: an id outside the vocabulary.
    """
    pieces = []
    for i in ids:
      if i in (PAD_ID, EOS_ID):
        continue
      if not 0 <= i < len(self.subtokens):
        raise ValueError(f'subword id {i} is outside the vocabulary of {len(self.subtokens)}')
      pieces.append(self.subtokens[i])
    tokens: List[str] = [_unescape(t) for t in ''.join(pieces).split('_') if t]
    tokens = [t for t in tokens if t]
    out = []
    for i, token in enumerate(tokens):
      if i and _is_alphanumeric(tokens[i - 1][0]) and _is_alphanumeric(token[0]):
        out.append(' ')
      out.append(token)
    return ''.join(out)
