"""BERT encoder in Keras 2 (tf_keras) and the loading of Google's published BERT checkpoints.

The network of Devlin et al. 2019 ("BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding") as google-research/bert's modeling.py defines it: word, token-type and
learned position embeddings summed, layer-normalized (epsilon 1e-12) and dropped out; L
post-layer-norm Transformer blocks (multi-head self-attention over the non-padding tokens, a
dense projection, residual and layer norm; a GELU feed-forward layer of `intermediate_size`, a
projection, residual and layer norm); and the pooler, a tanh dense layer over the first ([CLS])
token. GELU is the tanh approximation of modeling.py.

`BertConfig` reads Google's `bert_config.json`. `load_google_checkpoint` copies a released
checkpoint (`bert_model.ckpt`, a TF1 name-based checkpoint) into an encoder built here. The name
mapping, per layer i:

  bert/embeddings/{word,token_type,position}_embeddings       -> the three embedding tables
  bert/embeddings/LayerNorm/{gamma,beta}                      -> embeddings layer norm
  bert/encoder/layer_i/attention/self/{query,key,value}/kernel [H, H] -> [H, heads, H / heads]
  bert/encoder/layer_i/attention/self/{query,key,value}/bias   [H]    -> [heads, H / heads]
  bert/encoder/layer_i/attention/output/dense/kernel           [H, H] -> [heads, H / heads, H]
  bert/encoder/layer_i/attention/output/{dense/bias,LayerNorm/*}
  bert/encoder/layer_i/intermediate/dense/{kernel,bias}, output/dense/*, output/LayerNorm/*
  bert/pooler/dense/{kernel,bias}

(the reshapes are those of Keras' MultiHeadAttention, whose heads are contiguous slices of the
hidden size, as in modeling.py's `transpose_for_scores`). The pre-training heads (`cls/...`),
`global_step` and optimizer slots are not part of the encoder and are skipped; any other
checkpoint variable, and any encoder weight the checkpoint lacks, is an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras import layers

LAYER_NORM_EPSILON = 1e-12  # modeling.py


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The encoder's sizes, as in Google's bert_config.json.

  Published configurations (google-research/bert README): BERT-Tiny L-2/H-128/A-2, Base
  L-12/H-768/A-12, Large L-24/H-1024/A-16; intermediate size 4H; vocabulary 30,522 (uncased).
  """
  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  hidden_act: str = 'gelu'

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f'hidden_size {self.hidden_size} is not a multiple of '
                       f'num_attention_heads {self.num_attention_heads}')
    if self.hidden_act != 'gelu':
      raise ValueError(f'hidden_act {self.hidden_act!r}: only gelu (BERT\'s) is implemented')

  @classmethod
  def from_json_file(cls, path: str) -> 'BertConfig':
    """Reads a bert_config.json; unknown keys are an error (they would change the network)."""
    with tf.io.gfile.GFile(path) as f:
      values = json.load(f)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f'{path}: unknown BERT config keys {unknown}')
    return cls(**values)

  @classmethod
  def named(cls, name: str) -> 'BertConfig':
    """`tiny`, `base` or `large` (uncased vocabulary)."""
    sizes = {'tiny': (2, 128, 2), 'base': (12, 768, 12), 'large': (24, 1024, 16)}
    if name not in sizes:
      raise ValueError(f'unknown BERT configuration {name!r}; expected one of {sorted(sizes)}')
    layers_, hidden, heads = sizes[name]
    return cls(hidden_size=hidden, num_hidden_layers=layers_, num_attention_heads=heads,
               intermediate_size=4 * hidden)


def gelu(x):
  """GELU, tanh approximation (Hendrycks & Gimpel 2016; google-research/bert modeling.py)."""
  return tf.nn.gelu(x, approximate=True)


class BertEncoder(tf_keras.Model):
  """BERT encoder: (word ids, input mask, type ids), int32 [batch, length] each ->
  {'sequence_output': float32 [batch, length, H], 'pooled_output': float32 [batch, H]}."""

  def __init__(self, config: BertConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range)  # pylint: disable=unnecessary-lambda-assignment
    h, heads = config.hidden_size, config.num_attention_heads
    self.word_embeddings = layers.Embedding(config.vocab_size, h, embeddings_initializer=init(),
                                            name='word_embeddings')
    self.token_type_embeddings = layers.Embedding(config.type_vocab_size, h,
                                                  embeddings_initializer=init(),
                                                  name='token_type_embeddings')
    self.position_embeddings = layers.Embedding(config.max_position_embeddings, h,
                                                embeddings_initializer=init(),
                                                name='position_embeddings')
    self.embeddings_norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON,
                                                     name='embeddings_layer_norm')
    self.dropout = layers.Dropout(config.hidden_dropout_prob)
    self.blocks = []
    for i in range(config.num_hidden_layers):
      self.blocks.append({
          'attention': layers.MultiHeadAttention(
              heads, h // heads, dropout=config.attention_probs_dropout_prob,
              kernel_initializer=init(), name=f'layer_{i}_attention'),
          'attention_norm': layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON,
                                                      name=f'layer_{i}_attention_layer_norm'),
          'intermediate': layers.Dense(config.intermediate_size, activation=gelu,
                                       kernel_initializer=init(), name=f'layer_{i}_intermediate'),
          'output': layers.Dense(h, kernel_initializer=init(), name=f'layer_{i}_output'),
          'output_norm': layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON,
                                                   name=f'layer_{i}_output_layer_norm'),
      })
    self.pooler = layers.Dense(h, activation='tanh', kernel_initializer=init(), name='pooler')

  def get_config(self) -> Dict[str, Any]:
    return {'config': dataclasses.asdict(self.config), 'name': self.name}

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> 'BertEncoder':
    return cls(BertConfig(**config['config']), name=config.get('name'))

  def call(self, inputs: Tuple[tf.Tensor, tf.Tensor, tf.Tensor], training=None):
    word_ids, mask, type_ids = inputs
    length = tf.shape(word_ids)[1]
    x = (self.word_embeddings(word_ids) + self.token_type_embeddings(type_ids)
         + self.position_embeddings(tf.range(length))[tf.newaxis])
    x = self.dropout(self.embeddings_norm(x), training=training)
    attention_mask = tf.cast(mask[:, tf.newaxis, :], tf.bool)  # [batch, 1 (queries), keys]
    for block in self.blocks:
      attended = block['attention'](x, x, attention_mask=attention_mask, training=training)
      x = block['attention_norm'](x + self.dropout(attended, training=training))
      y = block['output'](block['intermediate'](x))
      x = block['output_norm'](x + self.dropout(y, training=training))
    return {'sequence_output': x, 'pooled_output': self.pooler(x[:, 0])}


def build_encoder(config: BertConfig, max_length: int = 8) -> BertEncoder:
  """A BertEncoder with its weights created (called once on a [1, max_length] batch)."""
  encoder = BertEncoder(config, name='bert_encoder')
  ones = tf.ones([1, max_length], tf.int32)
  encoder((ones, ones, tf.zeros_like(ones)), training=False)
  return encoder


def _checkpoint_names(config: BertConfig) -> List[Tuple[str, str, object]]:
  """(checkpoint variable, encoder weight path, reshape) for every encoder weight."""
  h, heads = config.hidden_size, config.num_attention_heads
  head = h // heads
  names = [
      ('bert/embeddings/word_embeddings', 'word_embeddings/embeddings', None),
      ('bert/embeddings/token_type_embeddings', 'token_type_embeddings/embeddings', None),
      ('bert/embeddings/position_embeddings', 'position_embeddings/embeddings', None),
      ('bert/embeddings/LayerNorm/gamma', 'embeddings_layer_norm/gamma', None),
      ('bert/embeddings/LayerNorm/beta', 'embeddings_layer_norm/beta', None),
  ]
  for i in range(config.num_hidden_layers):
    g = f'bert/encoder/layer_{i}'
    k = f'layer_{i}'
    for part in ('query', 'key', 'value'):
      names += [(f'{g}/attention/self/{part}/kernel', f'{k}_attention/{part}/kernel',
                 (h, heads, head)),
                (f'{g}/attention/self/{part}/bias', f'{k}_attention/{part}/bias', (heads, head))]
    names += [
        (f'{g}/attention/output/dense/kernel', f'{k}_attention/attention_output/kernel',
         (heads, head, h)),
        (f'{g}/attention/output/dense/bias', f'{k}_attention/attention_output/bias', None),
        (f'{g}/attention/output/LayerNorm/gamma', f'{k}_attention_layer_norm/gamma', None),
        (f'{g}/attention/output/LayerNorm/beta', f'{k}_attention_layer_norm/beta', None),
        (f'{g}/intermediate/dense/kernel', f'{k}_intermediate/kernel', None),
        (f'{g}/intermediate/dense/bias', f'{k}_intermediate/bias', None),
        (f'{g}/output/dense/kernel', f'{k}_output/kernel', None),
        (f'{g}/output/dense/bias', f'{k}_output/bias', None),
        (f'{g}/output/LayerNorm/gamma', f'{k}_output_layer_norm/gamma', None),
        (f'{g}/output/LayerNorm/beta', f'{k}_output_layer_norm/beta', None),
    ]
  names += [('bert/pooler/dense/kernel', 'pooler/kernel', None),
            ('bert/pooler/dense/bias', 'pooler/bias', None)]
  return names


def _weight_path(weight: tf.Variable) -> str:
  """`layer/variable` of an encoder weight, without the model scope and the `:0` suffix."""
  name = weight.name.split(':')[0]
  parts = name.split('/')
  return '/'.join(parts[1:]) if parts[0] == 'bert_encoder' else name


_SKIPPED_PREFIXES = ('cls/', 'global_step')
_SKIPPED_SUFFIXES = ('/adam_m', '/adam_v')


def load_google_checkpoint(encoder: BertEncoder, checkpoint: str) -> Dict[str, Tuple[int, ...]]:
  """Copies a Google BERT checkpoint's encoder variables into `encoder` (built).

  Args:
    encoder: from `build_encoder`, with the checkpoint's BertConfig.
    checkpoint: the checkpoint prefix, e.g. `.../uncased_L-2_H-128_A-2/bert_model.ckpt`.

  Returns:
    {checkpoint variable: its shape} of the variables loaded.

  Raises:
    ValueError: a variable the mapping does not know (neither encoder nor skipped pre-training
      heads / optimizer state), an encoder weight missing from the checkpoint, or a shape that
      differs from the config's.
  """
  reader = tf.train.load_checkpoint(checkpoint)
  shapes = reader.get_variable_to_shape_map()
  weights = {_weight_path(w): w for w in encoder.weights}
  mapping = _checkpoint_names(encoder.config)
  expected = {name for name, _, _ in mapping}
  unknown = sorted(name for name in shapes if name not in expected
                   and not name.startswith(_SKIPPED_PREFIXES)
                   and not name.endswith(_SKIPPED_SUFFIXES))
  if unknown:
    raise ValueError(f'{checkpoint}: variables not in the BERT encoder mapping: {unknown[:5]}'
                     f'{" ..." if len(unknown) > 5 else ""}')
  missing = sorted(expected - set(shapes))
  if missing:
    raise ValueError(f'{checkpoint}: {len(missing)} encoder variables are missing, e.g. '
                     f'{missing[:3]} (a checkpoint of another BertConfig?)')
  loaded = {}
  for name, path, shape in mapping:
    value = reader.get_tensor(name)
    target = weights[path]
    if shape is not None:
      if math.prod(value.shape) != math.prod(shape):
        raise ValueError(f'{checkpoint}: {name} has shape {list(value.shape)}, which does not '
                         f'fit {list(shape)}')
      value = np.reshape(value, shape)
    if tuple(value.shape) != tuple(target.shape):
      raise ValueError(f'{checkpoint}: {name} has shape {list(value.shape)}, the encoder\'s '
                       f'{path} {list(target.shape)} (a checkpoint of another BertConfig?)')
    target.assign(value)
    loaded[name] = tuple(reader.get_tensor(name).shape)
  return loaded


def checkpoint_config(checkpoint_dir: str) -> Optional[BertConfig]:
  """The BertConfig of a released checkpoint folder (its bert_config.json), or None."""
  path = tf.io.gfile.join(checkpoint_dir, 'bert_config.json')
  return BertConfig.from_json_file(path) if tf.io.gfile.exists(path) else None
