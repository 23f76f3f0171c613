"""The Transformer (Vaswani et al. 2017, arXiv:1706.03762) in Keras 2, as the seed's
official/transformer builds it.

- Encoder and decoder stacks of `num_layers` layers; each sublayer (self-attention, encoder-decoder
  attention, feed-forward) is wrapped as `x + dropout(sublayer(layer_norm(x)))` (pre-layer
  normalization, the seed's PrePostProcessingWrapper), and each stack ends with a layer norm.
- One embedding matrix shared by the source, the target and the output softmax (a shared
  vocabulary), initialised N(0, hidden_size**-0.5); embeddings are scaled by sqrt(hidden_size) and
  added to sinusoidal position encodings (timescales 1 to 1e4).
- Multi-head dot-product attention without biases in its projections; feed-forward ReLU layer of
  `filter_size` units.
- Ids: 0 is padding (masked in attention and the loss), 1 is EOS; the decoder's input is the target
  shifted right by one position (a 0 first: the start symbol is the padding id, as in the seed).

`PARAMS` holds the seed's `base` and `big` settings (model_params.py: base 6 layers, 512 units, 8
heads, 2048 filter, dropout 0.1; big 1024 units, 16 heads, 4096 filter, dropout 0.3) and a `small`
one sized for a 2-core CPU (no dropout).

`Transformer.translate` decodes with beam search (model_fns.beam_search), caching every layer's
self-attention keys and values and the encoder-decoder attention's projections of the encoder
output, so a step costs one position, not the whole prefix.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf
import tf_keras

from model_fns import beam_search

PAD_ID = 0
EOS_ID = 1
NEG_INF = -1e9

PARAMS: Dict[str, Dict[str, Any]] = {
    # Sized for a fixed CPU budget on 2 cores (benchmarks/wmt.py), no dropout: ~4.6 M parameters
    # with an 8k vocabulary (1.5 M of them the shared embedding). 192 units (filter 768) learn no
    # slower per step than 256 (1,024) and take less time a step, so a budget trains them on more
    # tokens to a lower loss. Dropout's random masks cost time and the budget is a few epochs,
    # where there is little to regularize. The measurements: README, "Figures behind the
    # defaults".
    'small': dict(num_layers=3, hidden_size=192, num_heads=4, filter_size=768, dropout=0.0),
    'base': dict(num_layers=6, hidden_size=512, num_heads=8, filter_size=2048, dropout=0.1),
    'big': dict(num_layers=6, hidden_size=1024, num_heads=16, filter_size=4096, dropout=0.3),
}


def position_encoding(length: tf.Tensor, hidden_size: int, start: tf.Tensor = 0) -> tf.Tensor:
  """Sinusoidal position encodings, float32 [length, hidden_size]: positions start..start+length-1,
  the first half of the channels sines and the second cosines, over timescales geometrically
  spaced from 1 to 1e4 (Vaswani et al. 2017, section 3.5, in the seed's channel layout)."""
  position = tf.cast(tf.range(start, start + length), tf.float32)
  num_timescales = hidden_size // 2
  log_increment = math.log(1.0e4) / max(num_timescales - 1, 1)
  inv_timescales = tf.exp(tf.range(num_timescales, dtype=tf.float32) * -log_increment)
  scaled = position[:, None] * inv_timescales[None, :]
  return tf.concat([tf.sin(scaled), tf.cos(scaled)], axis=1)


def padding_bias(ids: tf.Tensor) -> tf.Tensor:
  """Additive attention bias float32 [batch, 1, 1, length]: -1e9 at padding ids, else 0."""
  return tf.cast(tf.equal(ids, PAD_ID), tf.float32)[:, None, None, :] * NEG_INF


def causal_bias(length: tf.Tensor) -> tf.Tensor:
  """Additive bias float32 [1, 1, length, length] that hides later positions."""
  lower = tf.linalg.band_part(tf.ones([length, length]), -1, 0)
  return ((1.0 - lower) * NEG_INF)[None, None]


class SharedEmbedding(tf_keras.layers.Layer):
  """The vocabulary's embedding matrix [vocab_size, hidden_size], used to embed ids (scaled by
  sqrt(hidden_size), zero at padding) and, transposed, to compute output logits."""

  def __init__(self, vocab_size: int, hidden_size: int, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size, self.hidden_size = vocab_size, hidden_size

  def build(self, input_shape):
    self.shared_weights = self.add_weight(
        'weights', shape=[self.vocab_size, self.hidden_size],
        initializer=tf_keras.initializers.RandomNormal(0.0, self.hidden_size ** -0.5))
    super().build(input_shape)

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    """ids int [batch, length] -> float32 [batch, length, hidden_size]."""
    embeddings = tf.gather(self.shared_weights, ids) * self.hidden_size ** 0.5
    return embeddings * tf.cast(tf.not_equal(ids, PAD_ID), embeddings.dtype)[..., None]

  def logits(self, x: tf.Tensor) -> tf.Tensor:
    """float32 [batch, length, hidden_size] -> logits [batch, length, vocab_size]."""
    return tf.einsum('blh,vh->blv', x, self.shared_weights)


class Attention(tf_keras.layers.Layer):
  """Multi-head scaled dot-product attention (no projection biases)."""

  def __init__(self, hidden_size: int, num_heads: int, dropout: float, **kwargs):
    super().__init__(**kwargs)
    if hidden_size % num_heads:
      raise ValueError(f'hidden_size {hidden_size} is not a multiple of num_heads {num_heads}')
    self.hidden_size, self.num_heads, self.dropout = hidden_size, num_heads, dropout
    dense = lambda name: tf_keras.layers.Dense(hidden_size, use_bias=False, name=name)  # pylint: disable=unnecessary-lambda-assignment
    self.query, self.key, self.value, self.output_dense = (
        dense('query'), dense('key'), dense('value'), dense('output'))

  def _heads(self, x: tf.Tensor) -> tf.Tensor:
    """[batch, length, hidden] -> [batch, heads, length, hidden / heads]."""
    shape = tf.shape(x)
    x = tf.reshape(x, [shape[0], shape[1], self.num_heads, self.hidden_size // self.num_heads])
    return tf.transpose(x, [0, 2, 1, 3])

  def project_memory(self, memory: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Keys and values of `memory` [batch, length, hidden], each [batch, heads, length, depth]."""
    return self._heads(self.key(memory)), self._heads(self.value(memory))

  def call(self, x: tf.Tensor, memory: Optional[tf.Tensor], bias: tf.Tensor, training: bool,
           cache: Optional[Dict[str, tf.Tensor]] = None) -> tf.Tensor:
    """Attends from `x` [batch, length_q, hidden] to `memory` [batch, length_k, hidden] (`x` for
    self-attention), with the additive `bias` broadcastable to [batch, heads, length_q, length_k].

    `cache` (decoding): {'key', 'value'} of the earlier positions ([batch, heads, t, depth]),
    extended in place by this step's for self-attention (memory None), or the precomputed
    projections of the encoder output (memory ignored) when it holds `static` too.
    """
    query = self._heads(self.query(x)) * (self.hidden_size // self.num_heads) ** -0.5
    if cache is not None and 'static' in cache:
      key, value = cache['key'], cache['value']
    else:
      key, value = self.project_memory(x if memory is None else memory)
      if cache is not None:
        key = tf.concat([cache['key'], key], axis=2)
        value = tf.concat([cache['value'], value], axis=2)
        cache['key'], cache['value'] = key, value
    weights = tf.nn.softmax(tf.matmul(query, key, transpose_b=True) + bias)
    if training and self.dropout:
      weights = tf.nn.dropout(weights, self.dropout)
    out = tf.transpose(tf.matmul(weights, value), [0, 2, 1, 3])
    shape = tf.shape(out)
    return self.output_dense(tf.reshape(out, [shape[0], shape[1], self.hidden_size]))


class FeedForward(tf_keras.layers.Layer):
  """Position-wise feed-forward network: Dense(filter_size, relu) -> Dense(hidden_size)."""

  def __init__(self, hidden_size: int, filter_size: int, dropout: float, **kwargs):
    super().__init__(**kwargs)
    self.dropout = dropout
    self.filter = tf_keras.layers.Dense(filter_size, activation='relu', name='filter')
    self.output_dense = tf_keras.layers.Dense(hidden_size, name='output')

  def call(self, x: tf.Tensor, training: bool) -> tf.Tensor:
    x = self.filter(x)
    if training and self.dropout:
      x = tf.nn.dropout(x, self.dropout)
    return self.output_dense(x)


class PrePostProcessing(tf_keras.layers.Layer):
  """`x + dropout(sublayer(layer_norm(x), ...))`."""

  def __init__(self, sublayer: tf_keras.layers.Layer, dropout: float, **kwargs):
    super().__init__(**kwargs)
    self.sublayer, self.dropout = sublayer, dropout
    self.layer_norm = tf_keras.layers.LayerNormalization(epsilon=1e-6, name='layer_norm')

  def call(self, x: tf.Tensor, *args, training: bool = False, **kwargs) -> tf.Tensor:
    y = self.sublayer(self.layer_norm(x), *args, training=training, **kwargs)
    if training and self.dropout:
      y = tf.nn.dropout(y, self.dropout)
    return x + y


class Transformer(tf_keras.Model):
  """Encoder-decoder Transformer over a shared subword vocabulary.

  Args:
    vocab_size: ids 0..vocab_size-1 (0 padding, 1 EOS).
    num_layers, hidden_size, num_heads, filter_size, dropout: see `PARAMS`.
    label_smoothing: training loss's label smoothing (Szegedy et al. 2016; 0.1 in the seed).
    beam_size, alpha, extra_decode_length: `translate`'s beam search: beam width, length penalty
      exponent, and tokens allowed beyond the source length (the seed: 4, 0.6, 50).

  Calling the model on {'inputs': int [batch, source_length], 'targets': int [batch,
  target_length]} returns the teacher-forced logits, float32 [batch, target_length, vocab_size].
  """

  def __init__(self, vocab_size: int, num_layers: int, hidden_size: int, num_heads: int,
               filter_size: int, dropout: float, label_smoothing: float = 0.1,
               beam_size: int = 4, alpha: float = 0.6, extra_decode_length: int = 50, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size, self.hidden_size, self.dropout = vocab_size, hidden_size, dropout
    self.label_smoothing = label_smoothing
    self.beam_size, self.alpha, self.extra_decode_length = beam_size, alpha, extra_decode_length
    self.embedding = SharedEmbedding(vocab_size, hidden_size, name='embedding')
    wrap = lambda layer, name: PrePostProcessing(layer, dropout, name=name)  # pylint: disable=unnecessary-lambda-assignment
    self.encoder_layers = [
        (wrap(Attention(hidden_size, num_heads, dropout), f'encoder_{i}_self_attention'),
         wrap(FeedForward(hidden_size, filter_size, dropout), f'encoder_{i}_ffn'))
        for i in range(num_layers)]
    self.decoder_layers = [
        (wrap(Attention(hidden_size, num_heads, dropout), f'decoder_{i}_self_attention'),
         wrap(Attention(hidden_size, num_heads, dropout), f'decoder_{i}_attention'),
         wrap(FeedForward(hidden_size, filter_size, dropout), f'decoder_{i}_ffn'))
        for i in range(num_layers)]
    self.encoder_norm = tf_keras.layers.LayerNormalization(epsilon=1e-6, name='encoder_norm')
    self.decoder_norm = tf_keras.layers.LayerNormalization(epsilon=1e-6, name='decoder_norm')
    self.loss_tracker = tf_keras.metrics.Mean('loss')
    self.accuracy_tracker = tf_keras.metrics.Mean('token_accuracy')
    self.token_counter = tf_keras.metrics.Sum('target_tokens')

  # Model ------------------------------------------------------------------------------------

  def encode(self, inputs: tf.Tensor, training: bool) -> Tuple[tf.Tensor, tf.Tensor]:
    """(encoder output float32 [batch, length, hidden], its padding bias [batch, 1, 1, length])."""
    bias = padding_bias(inputs)
    x = self.embedding(inputs) + position_encoding(tf.shape(inputs)[1], self.hidden_size)
    if training and self.dropout:
      x = tf.nn.dropout(x, self.dropout)
    for self_attention, ffn in self.encoder_layers:
      x = self_attention(x, None, bias, training=training)
      x = ffn(x, training=training)
    return self.encoder_norm(x), bias

  def decode(self, targets: tf.Tensor, memory: tf.Tensor, memory_bias: tf.Tensor,
             training: bool) -> tf.Tensor:
    """Teacher-forced logits [batch, length, vocab] of `targets` (shifted right here)."""
    decoder_input = tf.pad(targets[:, :-1], [[0, 0], [1, 0]])
    length = tf.shape(decoder_input)[1]
    x = self.embedding(decoder_input) + position_encoding(length, self.hidden_size)
    if training and self.dropout:
      x = tf.nn.dropout(x, self.dropout)
    bias = causal_bias(length)
    for self_attention, attention, ffn in self.decoder_layers:
      x = self_attention(x, None, bias, training=training)
      x = attention(x, memory, memory_bias, training=training)
      x = ffn(x, training=training)
    return self.embedding.logits(self.decoder_norm(x))

  def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    memory, memory_bias = self.encode(inputs['inputs'], training)
    return self.decode(inputs['targets'], memory, memory_bias, training)

  # Training ---------------------------------------------------------------------------------

  def loss_and_accuracy(self, logits: tf.Tensor, labels: tf.Tensor
                        ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(mean label-smoothed cross-entropy over non-padding targets, their token accuracy, their
    count). The smoothed targets put `1 - label_smoothing` on the label and spread the rest over
    the other ids; the loss subtracts those targets' entropy, so a perfect model scores 0 (the
    seed's metrics.padded_cross_entropy_loss)."""
    labels = tf.cast(labels, tf.int32)
    weights = tf.cast(tf.not_equal(labels, PAD_ID), tf.float32)
    confidence = 1.0 - self.label_smoothing
    low = self.label_smoothing / (self.vocab_size - 1)
    soft = tf.one_hot(labels, self.vocab_size, on_value=confidence, off_value=low)
    xent = tf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=logits)
    entropy = -(confidence * math.log(confidence)
                + (self.vocab_size - 1) * low * math.log(low + 1e-20))
    tokens = tf.reduce_sum(weights)
    loss = tf.reduce_sum((xent - entropy) * weights) / tf.maximum(tokens, 1.0)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    accuracy = tf.reduce_sum(correct * weights) / tf.maximum(tokens, 1.0)
    return loss, accuracy, tokens

  @property
  def metrics(self):
    return [self.loss_tracker, self.accuracy_tracker, self.token_counter]

  def train_step(self, data):
    features, labels = data
    with tf.GradientTape() as tape:
      logits = self(features, training=True)
      loss, accuracy, tokens = self.loss_and_accuracy(logits, labels)
      # Gradients are summed over replicas: each replica's share of the mean.
      scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
    gradients = tape.gradient(scaled, self.trainable_variables)
    self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
    self.loss_tracker.update_state(loss, sample_weight=tokens)
    self.accuracy_tracker.update_state(accuracy, sample_weight=tokens)
    self.token_counter.update_state(tokens)
    return {m.name: m.result() for m in self.metrics}

  def test_step(self, data):
    features, labels = data
    loss, accuracy, tokens = self.loss_and_accuracy(self(features, training=False), labels)
    self.loss_tracker.update_state(loss, sample_weight=tokens)
    self.accuracy_tracker.update_state(accuracy, sample_weight=tokens)
    self.token_counter.update_state(tokens)
    return {m.name: m.result() for m in self.metrics}

  # Decoding ---------------------------------------------------------------------------------

  def translate(self, inputs: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Beam search translations of a batch of source ids.

    Args:
      inputs: int [batch, length], EOS-terminated, 0-padded.

    Returns:
      (ids int32 [batch, longest source + extra_decode_length]: the best hypothesis, EOS included
      (at the latest after its source's own length + extra_decode_length tokens), 0 after it;
      score float32 [batch]: its log probability / length penalty).
    """
    inputs = tf.cast(inputs, tf.int32)
    memory, memory_bias = self.encode(inputs, training=False)
    batch = tf.shape(inputs)[0]
    # Each sentence may generate its own length + extra_decode_length tokens (EOS is forced at
    # the last one), so a translation does not depend on the other sentences of its batch.
    source_lengths = tf.reduce_sum(tf.cast(tf.not_equal(inputs, PAD_ID), tf.int32), axis=1)
    last_step = tf.repeat(source_lengths + self.extra_decode_length - 1, self.beam_size)
    max_decode_length = tf.reduce_max(source_lengths) + self.extra_decode_length
    eos_only = tf.one_hot(EOS_ID, self.vocab_size, on_value=0.0, off_value=NEG_INF)
    heads = self.decoder_layers[0][0].sublayer.num_heads
    depth = self.hidden_size // heads
    # What every hypothesis of a sequence shares (the encoder output's bias and projections) is
    # repeated per beam once, outside the search's cache, which is reordered every step.
    repeat = lambda t: tf.repeat(t, self.beam_size, axis=0)  # pylint: disable=unnecessary-lambda-assignment
    memory_bias = repeat(memory_bias)
    memory_projections = [tuple(map(repeat, attention.sublayer.project_memory(memory)))
                          for _, attention, _ in self.decoder_layers]
    empty = tf.zeros([batch, heads, 0, depth])
    cache = {f'layer_{i}': {'key': empty, 'value': empty}
             for i in range(len(self.decoder_layers))}

    def symbols_to_logits(ids, step, cache):
      x = self.embedding(ids[:, -1:]) + position_encoding(1, self.hidden_size, start=step)
      new_cache = {}
      for i, (self_attention, attention, ffn) in enumerate(self.decoder_layers):
        own = dict(cache[f'layer_{i}'])
        x = self_attention(x, None, 0.0, training=False, cache=own)
        key, value = memory_projections[i]
        x = attention(x, None, memory_bias, training=False,
                      cache={'key': key, 'value': value, 'static': True})
        x = ffn(x, training=False)
        new_cache[f'layer_{i}'] = own
      logits = self.embedding.logits(self.decoder_norm(x))[:, 0, :]
      return tf.where((step >= last_step)[:, None], eos_only[None, :], logits), new_cache

    sequences, scores = beam_search.beam_search(
        symbols_to_logits, tf.fill([batch], PAD_ID), cache, self.vocab_size, self.beam_size,
        self.alpha, max_decode_length, EOS_ID)
    # The best hypothesis without its start id, 0-padded to the documented width (the search
    # stops early once no alive hypothesis can beat the finished ones).
    ids = sequences[:, 0, 1:]
    ids = tf.pad(ids, [[0, 0], [0, max_decode_length - tf.shape(ids)[1]]])
    return ids, scores[:, 0]


def build(vocab_size: int, model_type: str, overrides: Mapping[str, Any]) -> Transformer:
  """A Transformer of `PARAMS[model_type]`, updated with `overrides` (any Transformer argument).

  Raises:
    ValueError: an unknown model type.
  """
  if model_type not in PARAMS:
    raise ValueError(f'unknown Transformer size {model_type!r}; expected one of {sorted(PARAMS)}')
  return Transformer(vocab_size, **{**PARAMS[model_type], **overrides})
