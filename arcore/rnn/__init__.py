"""Neural autoregressive models: Elman RNN, GRU and LSTM language models trained with truncated BPTT.

The token stream, the training loop, checkpoints and DDP are shared with ``arcore.transformer`` and live in
``arcore.neural``; this package adds the recurrent model. Modules, in the order data flows through them:
- ``config``: ``RNNConfig``, the stage's settings (the model shape on top of ``TrainingConfig``);
- ``model``: ``RNNModel`` (embedding, recurrence, tied linear head);
- ``train``: ``train_rnn`` (``arcore.neural.train``'s resumable truncated BPTT with the RNN family) ->
  ``TrainResult``;
- ``checkpoint``: the saved model (state dict + ``config.json``) and the RNN's checkpoint tag;
- ``diagnostics``: ``||dL/dh_t||`` per time step and the recurrent spectral norm (vanishing gradients);
- ``lm``: ``RNNLanguageModel``, the ``arcore.lm.LanguageModel`` adapter used by evaluation and decoding;
- ``stage``: ``build_rnn`` / ``load_rnn``, the pipeline stage;
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
