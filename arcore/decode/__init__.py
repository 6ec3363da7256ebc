"""Decoding: turning any ``LanguageModel`` (``arcore.lm``) into token ids, written once for every model.

- ``filters``: ``temperature_scale``, ``top_k_filter``, ``top_p_filter`` on ``(batch, vocab)`` log-probs,
  composed by ``apply_filters`` in the order temperature -> top-k -> top-p.
- ``greedy``: argmax decoding. ``sampling``: seeded ancestral sampling through the filters.
- ``beam_search``: beam width, length penalty, n-best lists, finished hypotheses kept apart.
- ``config``: ``DecodeConfig`` and the ``check_*`` validators (one-line ``ConfigError`` messages).
- ``strategies``: ``generate(model, prompt, cfg)``, the single entry point for front ends.

Every decoder feeds the prompt through ``advance`` first and returns frozen ``Generation`` records.
"""

from arcore.decode.beam_search import beam_search, length_penalty
from arcore.decode.config import DecodeConfig, check_prompt
from arcore.decode.filters import apply_filters, log_softmax, temperature_scale, top_k_filter, top_p_filter
from arcore.decode.generation import Generation, feed_prompt
from arcore.decode.greedy import greedy
from arcore.decode.sampling import sample, sample_from_logprobs
from arcore.decode.strategies import generate

__all__ = [
    "DecodeConfig", "Generation", "apply_filters", "beam_search", "check_prompt", "feed_prompt", "generate",
    "greedy", "length_penalty", "log_softmax", "sample", "sample_from_logprobs", "temperature_scale",
    "top_k_filter", "top_p_filter",
]
