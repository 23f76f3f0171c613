"""One module per model family, each registering its ModelSpec(s) with `pipelines.spec.register`
when imported. `pipelines.spec` discovers them here: adding a model adds a module to this package
and touches no shared file."""
