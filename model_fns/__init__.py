"""Keras models (one `KerasTask` per model family) and the shared distributed trainer."""
