"""What both neural families share: the token stream, the training loop, checkpoints and data parallelism.

``arcore.rnn`` (recurrence) and ``arcore.transformer`` (masking) each add a model, its saved form and its
diagnostics; everything else lives here, and neither family imports the other. Modules, in the order data
flows through them:
- ``config``: ``TrainingConfig``, the training schedule both stages' configs extend (torch-free);
- ``data``: a split's ids as a flat memory-mapped ``.npy`` (``read_split_tokens``, ``TokenFile``), cut into
  word_language_model's ``(time, batch)`` streams and BPTT windows as views (``TokenStreams``);
- ``loss``: the next-token loss and the detach that truncates back-propagation at a window boundary;
- ``train``: ``train_model(family, ...)``, the resumable loop (plateau/cosine schedule, ``max_steps``,
  bf16 on CUDA, DDP), written against a ``ModelFamily``; ``TrainResult``;
- ``checkpoint``: atomic, pickle-free ``checkpoint.pt`` and the file primitives model directories use;
- ``distributed``: torchrun / DDP process-group setup; ``launch``: the command-line entry point;
- ``stage``: what a training stage reads (the train split memory-mapped, the valid split or its sample).
"""

from arcore.neural.config import TrainingConfig

__all__ = ["TrainingConfig"]
