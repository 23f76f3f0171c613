"""Model specs, the shared TFX pipeline factory, the runners and the `official-tfx` command line."""
