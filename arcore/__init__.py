"""arcore: the library behind arpipe.

Plain Python: ingest, tokenization, shards, n-gram and neural autoregressive models, decoding and
evaluation. It never imports prefect or mlflow (tests/test_layering.py enforces it); orchestration and
tracking live in ``tasks/`` and ``flows/``.
"""

__version__ = "0.1.0"
