"""The causal Transformer: config refusals, the mask, attention weights, tying, save/load round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from arcore.errors import InputError, StageError
from arcore.transformer.attention_map import attention_maps, plot_attention
from arcore.transformer.checkpoint import MODEL_CONFIG, MODEL_WEIGHTS, load_model, save_model
from arcore.transformer.config import TransformerConfig
from arcore.transformer.model import TransformerModel

V = 17
TINY = dict(layers=2, d_model=16, heads=4, context=12)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed=0, **over) -> TransformerModel:
    torch.manual_seed(seed)
    return TransformerModel(TransformerConfig(**{**TINY, **over}), V).eval()


def test_config_refuses_bad_values_naming_the_key():
    with pytest.raises(ValidationError, match="heads"):
        TransformerConfig(d_model=30, heads=4)
    with pytest.raises(ValidationError, match="context"):
        TransformerConfig(context=1)
    with pytest.raises(ValidationError, match="dropout"):
        TransformerConfig(dropout=1.0)
    with pytest.raises(ValidationError, match="optimizer"):
        TransformerConfig(optimizer="adam")
    with pytest.raises(ValidationError, match="extra"):
        TransformerConfig(bptt=64)  # the window length is ``context``; bptt is its read-only alias
    cfg = TransformerConfig(context=64)
    assert cfg.bptt == 64 and cfg.head_size == 32
    with pytest.raises(ValidationError):
        cfg.layers = 3  # frozen


def test_output_at_t_does_not_depend_on_tokens_after_t():
    model = _model()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (12, 3), generator=g)
    logits, state = model(ids)
    assert logits.shape == (12, 3, V) and state is None
    for t in (0, 4, 10):
        changed = ids.clone()
        changed[t + 1 :] = (changed[t + 1 :] + 1 + torch.randint(0, V - 1, changed[t + 1 :].shape, generator=g)) % V
        other, _ = model(changed)
        torch.testing.assert_close(other[: t + 1], logits[: t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(other[t + 1 :], logits[t + 1 :], atol=1e-3)  # the later outputs do move


def test_attention_weights_are_causal_distributions_and_are_what_sdpa_computes():
    model = _model()
    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(2))
    w = model.attention_weights(ids)  # last layer
    assert w.shape == (2, 4, 9, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9))
    past = torch.ones(9, 9, dtype=torch.bool).tril()
    assert torch.all(w[..., ~past] == 0) and torch.all(w[..., past] > 0)
    # Re-derive the last block's attention output from the written-out weights: SDPA gives the same.
    x = model._embed(ids, 0)
    x, _ = model.blocks[0](x)
    attn = model.blocks[1].attn
    h = model.blocks[1].ln1(x)
    _, _, v = attn._split(h)
    manual = attn.proj((model.blocks[1].attn.weights(h) @ v).transpose(1, 2).reshape(h.shape))
    torch.testing.assert_close(attn(h)[0], manual, rtol=1e-5, atol=1e-6)


def test_cached_forward_equals_the_full_pass():
    model = _model()
    ids = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(3))
    full, _ = model.forward_cached(ids)
    step, cache = model.forward_cached(ids[:, :1])
    outs = [step]
    for t in range(1, 10):
        step, cache = model.forward_cached(ids[:, t : t + 1], cache)
        outs.append(step)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache[0][0].shape == (3, 4, 10, 4)  # (batch, heads, positions, head size)


def test_head_is_tied_and_the_context_is_enforced():
    model = _model()
    names = [n for n, _ in model.named_parameters()]
    assert not any("head" in n for n in names)  # the output matrix is tok_emb.weight itself
    d, L = 16, 2
    per_block = 4 * d * d + 4 * d + 2 * 4 * d * d + 4 * d + d + 4 * d  # attn + mlp + 2 LayerNorms
    assert sum(p.numel() for p in model.parameters()) == V * d + 12 * d + L * per_block + 2 * d
    groups = model.optimizer_groups(0.1)
    assert sum(len(g["params"]) for g in groups) == len(names)
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and groups[1]["weight_decay"] == 0.0
    with pytest.raises(InputError, match="exceed the model's context of 12"):
        model(torch.zeros(13, 1, dtype=torch.long))


def test_save_load_round_trip_gives_the_same_outputs(tmp_path):
    model = _model(dropout=0.1)
    save_model(tmp_path / "m", model)
    meta = json.loads((tmp_path / "m" / MODEL_CONFIG).read_text())
    assert meta["vocab_size"] == V and meta["transformer"]["context"] == 12
    state = torch.load(tmp_path / "m" / MODEL_WEIGHTS, weights_only=True)  # no pickle needed
    assert set(state) == set(model.state_dict())
    loaded = load_model(tmp_path / "m", vocab_size=V)
    assert not loaded.training
    x = torch.randint(0, V, (7, 2))
    assert torch.equal(model(x)[0], loaded(x)[0])
    with pytest.raises(StageError, match="vocabulary of 17 tokens"):
        load_model(tmp_path / "m", vocab_size=18)
    weights = tmp_path / "m" / MODEL_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(StageError, match="corrupt"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / MODEL_CONFIG).write_text(json.dumps({"format": "arpipe-rnn-model-v1"}))
    with pytest.raises(StageError, match="not an arpipe transformer model"):
        load_model(tmp_path / "m")


def test_attention_map_figure_is_written(tmp_path):
    model = _model()
    ids = [2, 5, 6, 7, 8, 9, 5, 6]
    maps = attention_maps(model, ids)
    assert maps.shape == (4, 8, 8) and np.allclose(np.triu(maps, 1), 0)
    path = plot_attention(model, ids, tmp_path / "attention.png", labels=lambda i: f"t{i}")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(InputError, match="at least one token"):
        plot_attention(model, [], tmp_path / "empty.png")
