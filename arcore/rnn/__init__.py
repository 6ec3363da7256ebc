"""Neural autoregressive models: Elman RNN, GRU and LSTM language models trained with truncated BPTT.

Modules, in the order data flows through them:
- ``config``: ``RNNConfig``, the stage's settings;
- ``batchify``: flat ids -> ``(time, batch)`` streams -> BPTT windows;
- ``model``: ``RNNModel`` (embedding, recurrence, tied linear head) and the next-token loss;
- ``train``: ``train_rnn`` (resumable truncated BPTT, plateau annealing, DDP) -> ``TrainResult``; the loop
  itself is ``train_model(family, ...)``, shared with ``arcore.transformer`` through ``ModelFamily``;
- ``checkpoint``: atomic, pickle-free checkpoints and the saved model (state dict + ``config.json``);
- ``distributed``: torchrun / DDP process-group setup; ``launch``: the command-line entry point;
- ``diagnostics``: ``||dL/dh_t||`` per time step and the recurrent spectral norm (vanishing gradients);
- ``lm``: ``RNNLanguageModel``, the ``arcore.lm.LanguageModel`` adapter used by evaluation and decoding;
- ``toy_addition``: the lecture's binary-addition Elman RNN.
"""

from arcore.rnn.config import RNNConfig

# torch loads only when a model or the trainer is used, not when the pipeline config is validated.
_LAZY = {"load_model": "checkpoint", "save_model": "checkpoint", "RNNLanguageModel": "lm", "RNNModel": "model",
         "TrainResult": "train", "train_rnn": "train"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"arcore.rnn.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'arcore.rnn' has no attribute {name!r}")

__all__ = ["RNNConfig", "RNNModel", "RNNLanguageModel", "TrainResult", "load_model", "save_model", "train_rnn"]
