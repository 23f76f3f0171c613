"""Custom TFX components for what the stock ones do not cover."""
