"""Apache Beam pipeline options for the runners the pipelines' Beam stages run on."""
