"""One entry point from a ``DecodeConfig`` to text ids: what ``arpipe generate``, the pyfunc model and the
evaluate stage's sample texts call.

Input: a ``LanguageModel``, a prompt (ids), a ``DecodeConfig``. Output: a tuple of ``Generation``
records: one for greedy, ``num_samples`` for the sampling strategies, the n-best list for beam search.

Strategy -> decoder:
- ``greedy``  -> ``greedy`` (temperature, top_k, top_p are ignored);
- ``sample``  -> ``sample`` with whichever of temperature / top_k / top_p are set;
- ``top-k``   -> ``sample``, and ``top_k`` must be set (``top_p`` still applies if set);
- ``top-p``   -> ``sample``, and ``top_p`` must be set (``top_k`` still applies if set);
- ``beam``    -> ``beam_search`` with beam_width, n_best, length_penalty, length_penalty_form.
"""

from __future__ import annotations

from typing import Sequence

from arcore.decode.beam_search import beam_search
from arcore.decode.config import DecodeConfig
from arcore.decode.constraints import MinLength
from arcore.decode.generation import Generation
from arcore.decode.greedy import greedy
from arcore.decode.sampling import sample
from arcore.lm import LanguageModel


def generate(model: LanguageModel, prompt: Sequence[int], cfg: DecodeConfig,
             require_prompt: bool = False) -> tuple[Generation, ...]:
    """Decode ``prompt`` with ``cfg.strategy``; ``require_prompt`` refuses an empty prompt."""
    if cfg.min_tokens:
        model = MinLength(model, cfg.min_tokens + len(prompt))
    if cfg.strategy == "greedy":
        return (greedy(model, prompt, max_tokens=cfg.max_tokens, require_prompt=require_prompt),)
    if cfg.strategy == "beam":
        return beam_search(model, prompt, beam_width=cfg.beam_width, n_best=cfg.n_best,
                           length_penalty_alpha=cfg.length_penalty,
                           length_penalty_form=cfg.length_penalty_form, max_tokens=cfg.max_tokens,
                           require_prompt=require_prompt)
    return sample(model, prompt, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                  max_tokens=cfg.max_tokens, num_samples=cfg.num_samples, seed=cfg.seed,
                  require_prompt=require_prompt)
