"""Dataset registry, raw-format parsers and tf.Transform `preprocessing_fn`s, one module per dataset."""
