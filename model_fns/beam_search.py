"""Beam search decoding with a length penalty, in graph (tf.while_loop), for sequence models.

The search of Wu et al. 2016 (GNMT, arXiv:1609.08144, section 7) as the seed's Transformer uses it
(Vaswani et al. 2017: beam 4, alpha 0.6): a hypothesis of length L (EOS included) with log
probability log P scores `log P / lp(L)`, with `lp(L) = ((5 + L) / 6) ** alpha`. Every step extends
each of the `beam_size` alive hypotheses by every token, keeps the `2 * beam_size` best extensions,
moves those that end in EOS to the finished set (the `beam_size` best scores are kept there) and
the best `beam_size` others to the alive set. The search stops at `max_decode_length` steps, or
once no alive hypothesis can beat the worst finished one: an alive hypothesis's log probability
only falls as it grows, so its best possible score is its log probability divided by the largest
penalty, `lp(max_decode_length)`.

The model is called through `symbols_to_logits_fn(ids, step, cache) -> (logits, cache)`: `ids` are
the hypotheses so far ([batch * beam, step + 1], the first column the start id), `logits` the next
token's ([batch * beam, vocab]), `cache` a nested structure of tensors whose first dimension is
batch * beam (keys and values of earlier steps; they are reordered with the hypotheses).
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import tensorflow as tf

INF = 1e7  # scores are float32; this stands for infinity without making NaNs in arithmetic

SymbolsToLogitsFn = Callable[[tf.Tensor, tf.Tensor, Any], Tuple[tf.Tensor, Any]]


def length_penalty(length: tf.Tensor, alpha: float) -> tf.Tensor:
  """GNMT's length penalty `((5 + length) / 6) ** alpha` (float32)."""
  return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def _merge_beams(x: tf.Tensor) -> tf.Tensor:
  """[batch, beam, ...] -> [batch * beam, ...]."""
  shape = tf.shape(x)
  return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))


def _split_beams(x: tf.Tensor, batch_size: tf.Tensor, beam_size: int) -> tf.Tensor:
  """[batch * beam, ...] -> [batch, beam, ...]."""
  return tf.reshape(x, tf.concat([[batch_size, beam_size], tf.shape(x)[1:]], 0))


def _gather_beams(x: tf.Tensor, beam_indices: tf.Tensor) -> tf.Tensor:
  """x[b, beam_indices[b, j]] for every b, j: [batch, beam, ...] -> [batch, new_beam, ...]."""
  return tf.gather(x, beam_indices, batch_dims=1)


def _tile_beams(x: tf.Tensor, beam_size: int) -> tf.Tensor:
  """[batch, ...] -> [batch, beam, ...], the same tensor in every beam."""
  x = tf.expand_dims(x, 1)
  multiples = tf.concat([[1, beam_size], tf.ones([tf.rank(x) - 2], tf.int32)], 0)
  return tf.tile(x, multiples)


def beam_search(symbols_to_logits_fn: SymbolsToLogitsFn, initial_ids: tf.Tensor,
                initial_cache: Any, vocab_size: int, beam_size: int, alpha: float,
                max_decode_length: tf.Tensor, eos_id: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """Beam search over a model's next-token distributions.

  Args:
    symbols_to_logits_fn: the model's step (see the module docstring).
    initial_ids: int32 [batch], the start id of every sequence.
    initial_cache: nested tensors, first dimension batch (tiled to batch * beam here).
    vocab_size: size of the logits' last dimension.
    beam_size: hypotheses kept per sequence (>= 1).
    alpha: length penalty exponent (0: plain log probability).
    max_decode_length: int32 scalar, the most tokens generated (EOS included).
    eos_id: the end-of-sequence id.

  Returns:
    (sequences int32 [batch, beam, length + 1], scores float32 [batch, beam]), best first. Each
    sequence starts with its start id; tokens after a hypothesis's EOS are 0. A sequence that
    finished no hypothesis within `max_decode_length` returns its alive hypotheses, scored by
    log probability / lp(max_decode_length).
  """
  batch_size = tf.shape(initial_ids)[0]
  max_decode_length = tf.convert_to_tensor(max_decode_length, tf.int32)
  alive_seq = tf.tile(tf.reshape(tf.cast(initial_ids, tf.int32), [-1, 1, 1]), [1, beam_size, 1])
  # Only the first beam is alive at the start: the others would repeat its extensions.
  alive_log_probs = tf.tile(
      tf.constant([[0.0] + [-INF] * (beam_size - 1)], tf.float32), [batch_size, 1])
  finished_seq = tf.zeros_like(alive_seq)
  finished_scores = tf.fill([batch_size, beam_size], -INF)
  finished_flags = tf.zeros([batch_size, beam_size], tf.bool)
  cache = tf.nest.map_structure(lambda t: _merge_beams(_tile_beams(t, beam_size)), initial_cache)

  def cond(step, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags,
           cache):
    del alive_seq, finished_seq, cache
    best_alive = alive_log_probs[:, 0] / length_penalty(max_decode_length, alpha)
    worst_finished = tf.reduce_min(
        tf.where(finished_flags, finished_scores, INF), axis=1)
    worst_finished = tf.where(tf.reduce_any(finished_flags, axis=1), worst_finished, -INF)
    can_improve = tf.reduce_any(best_alive > worst_finished)
    return tf.logical_and(step < max_decode_length, can_improve)

  def body(step, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags,
           cache):
    logits, new_cache = symbols_to_logits_fn(_merge_beams(alive_seq), step, cache)
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    log_probs = _split_beams(log_probs, batch_size, beam_size)  # [batch, beam, vocab]
    candidates = tf.reshape(alive_log_probs[:, :, None] + log_probs,
                            [batch_size, beam_size * vocab_size])
    top_log_probs, top_indices = tf.math.top_k(candidates, k=2 * beam_size)
    source_beams = top_indices // vocab_size
    tokens = top_indices % vocab_size
    top_seq = tf.concat([_gather_beams(alive_seq, source_beams), tokens[:, :, None]], axis=2)
    ends = tf.equal(tokens, eos_id)

    # Alive: the best beam_size extensions that did not end.
    alive_candidates = tf.where(ends, -INF, top_log_probs)
    new_alive_log_probs, alive_pick = tf.math.top_k(alive_candidates, k=beam_size)
    new_alive_seq = _gather_beams(top_seq, alive_pick)
    cache_beams = _gather_beams(source_beams, alive_pick)
    new_cache = tf.nest.map_structure(
        lambda t: _merge_beams(_gather_beams(_split_beams(t, batch_size, beam_size), cache_beams)),
        new_cache)

    # Finished: the best beam_size of the old finished and the extensions that ended.
    penalty = length_penalty(step + 1, alpha)
    ended_scores = tf.where(ends, top_log_probs / penalty, -INF)
    old_finished = tf.pad(finished_seq, [[0, 0], [0, 0], [0, 1]])
    all_seq = tf.concat([old_finished, top_seq], axis=1)
    all_scores = tf.concat([finished_scores, ended_scores], axis=1)
    all_flags = tf.concat([finished_flags, ends], axis=1)
    new_finished_scores, finished_pick = tf.math.top_k(all_scores, k=beam_size)
    return (step + 1, new_alive_seq, new_alive_log_probs,
            _gather_beams(all_seq, finished_pick), new_finished_scores,
            _gather_beams(all_flags, finished_pick), new_cache)

  state = (tf.constant(0), alive_seq, alive_log_probs, finished_seq, finished_scores,
           finished_flags, cache)
  beams = tf.TensorShape([None, beam_size])
  sequences = tf.TensorShape([None, beam_size, None])  # grow by one token per step
  invariants = (tf.TensorShape([]), sequences, beams, sequences, beams, beams,
                tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), cache))
  (_, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags,
   _) = tf.while_loop(cond, body, state, shape_invariants=invariants,
                      maximum_iterations=max_decode_length)
  any_finished = tf.reduce_any(finished_flags, axis=1)
  alive_scores = alive_log_probs / length_penalty(max_decode_length, alpha)
  sequences = tf.where(any_finished[:, None, None], finished_seq, alive_seq)
  scores = tf.where(any_finished[:, None], finished_scores, alive_scores)
  return sequences, scores
