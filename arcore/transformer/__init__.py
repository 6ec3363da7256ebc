"""Masked autoregressive models: a decoder-only causal Transformer, trained by the loop the RNN uses.

The lecture names two ways a neural autoregressive model can read its context: recurrence (``arcore.rnn``)
and masking (this package). Modules, in the order data flows through them:
- ``config``: ``TransformerConfig``, the stage's settings;
- ``model``: ``TransformerModel`` (token + position embeddings, pre-norm causal self-attention blocks,
  tied head) and its key/value cache;
- ``train``: ``train_transformer``: ``arcore.neural.train``'s resumable loop (checkpoints, DDP) on the same
  shard windows as the RNN (``arcore.neural.data``);
- ``checkpoint``: the saved model (state dict + ``config.json``), read with ``weights_only=True``;
- ``lm``: ``TransformerLanguageModel``, the ``arcore.lm.LanguageModel`` adapter with a K/V cache and a
  sliding window past the trained context;
- ``attention_map``: ``plot_attention``, one heat map per head: the causal mask made visible;
- ``stage``: ``build_transformer`` / ``load_transformer``, the pipeline stage.
"""

from arcore.transformer.config import TransformerConfig

# torch loads only when a model or the trainer is used, not when the pipeline config is validated.
_LAZY = {"load_model": "checkpoint", "save_model": "checkpoint", "TransformerLanguageModel": "lm",
         "TransformerModel": "model", "train_transformer": "train", "plot_attention": "attention_map",
         "build_transformer": "stage", "load_transformer": "stage"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"arcore.transformer.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'arcore.transformer' has no attribute {name!r}")


__all__ = ["TransformerConfig", "TransformerLanguageModel", "TransformerModel", "build_transformer", "load_model",
           "load_transformer", "plot_attention", "save_model", "train_transformer"]
