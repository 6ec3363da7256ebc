"""The training loop of every neural family: truncated BPTT as PyTorch's word_language_model trains, made resumable.

Input: a ``ModelFamily`` (``arcore.rnn.train.RNN_FAMILY``, ``arcore.transformer.train.TRANSFORMER_FAMILY``),
train and valid token ids in the shard layout (memory-mapped ``TokenFile``s or in-memory flat arrays, see
``arcore.neural.data``), the vocabulary size, the family's config (a ``TrainingConfig``) and an output
directory. Output, in ``out_dir``:

- ``checkpoint.pt``: the latest resumable state (every ``checkpoint_every`` steps and at each epoch end);
- ``model/`` (``model.pt`` + ``config.json``): the weights of the epoch with the best valid loss;

and a ``TrainResult`` with the figures. Relaunching with the same arguments resumes from ``checkpoint.pt``
(the RNG states, the carried hidden state and the data position are restored, so on CPU the resumed run
ends bit-identical to an uninterrupted one).

The loop (word_language_model's ``train()``): the train ids are cut into ``batch_size`` streams
(``TokenStreams``, a view of the ids: only each window is read and converted to int64); each step reads
the next ``bptt`` rows, starts from the hidden state the previous window left, *detached* so gradients
stop at the window boundary, back-propagates the mean next-token cross-entropy, clips the gradient norm to ``clip`` and takes an optimizer step. The hidden state restarts
from zero at each epoch. After each epoch the valid stream is scored the same way without gradients; if
its loss did not improve on the best so far the learning rate is divided by ``lr_anneal`` (4, as
word_language_model does for SGD; applied to AdamW too), otherwise the model is saved as the best.
With ``lr_schedule="cosine"`` the learning rate instead follows a cosine from ``lr`` down to 5% of it
over the planned steps (``cosine_lr``), and only the best-model selection happens at epoch ends.

Callbacks let a caller log without this module knowing about MLflow or progress bars:
``on_step(step, {"loss", "lr", "tokens_per_s"})`` after every optimizer step and
``on_epoch(epoch, {"train_loss", "valid_loss", "valid_ppl", "valid_bits_per_token", "valid_bpb"?, "lr",
"tokens_per_s", "spectral_norm_whh", "grad_h_decay"})`` after every epoch (``valid_bpb`` only when
``valid_bytes`` is given; it is the streaming estimate ``valid_loss * len(valid_ids) / (ln 2 * bytes)``, the
exact per-document figure is ``RNNLanguageModel.score``'s). ``progress(step, total_steps)`` drives a
progress bar. Only rank 0 calls them under DDP. ``TrainResult.stage_output()`` is the stage's return value.

``max_steps`` (the scale runs' budget) stops training after that many optimizer steps in total. A run
stopped by it closes its epoch early (validates, saves the best model, writes the epoch-end checkpoint), so
the stage always ends with a model; a relaunch with the same ``max_steps`` does no more work, and one with a
larger ``max_steps`` continues with the next epoch. A kill before the stop resumes from the last checkpoint
and ends bit-identical to an uninterrupted run with the same ``max_steps``.

GPU: ``device="auto"`` trains on CUDA when present, under bf16 autocast (no loss scaling needed); the loss
is computed in float32. Multi-GPU and multi-process use: see ``arcore.neural.distributed``.

Model families. The loop is written against a ``ModelFamily`` (how to build, save and diagnose the
model, its checkpoint format, its config section); ``arcore.rnn.train_rnn`` is ``train_model(RNN_FAMILY, ...)``.
A family whose model keeps no state between windows (the causal Transformer of ``arcore.transformer``)
returns ``None`` from ``init_hidden`` and from ``forward``: every window is then seen on its own, and the
rest (windows, clipping, annealing, checkpoints, resume, DDP) is shared unchanged. A model that defines
``optimizer_groups(weight_decay)`` chooses which parameters AdamW decays.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from arcore.errors import InputError, StageError
from arcore.neural import checkpoint as ck
from arcore.neural.data import Ids, TokenStreams, as_streams, check_window_fits, n_windows, scan_ids
from arcore.neural.distributed import DistContext, all_reduce_sum, barrier, gather_objects, init_from_env
from arcore.neural.loss import Hidden, detach_hidden, next_token_loss
from arcore.stage import Progress, StageOutput

StepCallback = Callable[[int, Mapping[str, float]], None]
EpochCallback = Callable[[int, Mapping[str, float]], None]

MODEL_DIR = "model"


@dataclass(frozen=True)
class ModelFamily:
    """What the shared training loop needs to know about one kind of model.

    section: the config section and stage name, used in error messages (``rnn``, ``transformer``).
    build: ``(cfg, vocab_size) -> nn.Module`` whose ``forward(ids (T, B), hidden) -> (logits, hidden)`` and
        ``init_hidden(batch)`` (``None`` for a model that carries no state between windows).
    save_model: writes the model directory (weights + config) the family's loader reads.
    checkpoint_format: tag written into and required from ``checkpoint.pt``.
    diagnostics: optional ``(model, valid TokenStreams, bptt) -> (metrics, per-step norms)`` run after each epoch.
    """

    section: str
    build: Callable[[Any, int], torch.nn.Module]
    save_model: Callable[[Path, torch.nn.Module], None]
    checkpoint_format: str
    diagnostics: Optional[Callable[[torch.nn.Module, TokenStreams, int], tuple[dict, np.ndarray]]] = None


@dataclass(frozen=True)
class TrainResult:
    """Figures of a finished run. Losses are nats per predicted token on the streaming valid layout."""

    best_valid_loss: float
    best_epoch: int
    epochs: int
    steps: int
    train_tokens: int
    seconds: float
    tokens_per_s: float
    resumed_from_step: int
    history: tuple[Mapping[str, float], ...]
    model_dir: Path
    weights_sha256: str  # of the final (last-step) weights on this rank: equal across ranks and resumes
    grad_h_norms: tuple[float, ...] = ()  # ||dL/dh_t|| on the first valid window after the last epoch
    parameters: int = 0  # trainable parameters of the model (tied embeddings counted once)

    def metrics(self) -> dict[str, float]:
        return {
            "best_valid_loss": self.best_valid_loss,
            "best_valid_ppl": math.exp(min(self.best_valid_loss, 700.0)),
            "best_epoch": float(self.best_epoch),
            "steps": float(self.steps),
            "train_tokens": float(self.train_tokens),
            "train_seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
            "parameters": float(self.parameters),
        }

    def stage_output(self) -> StageOutput:
        """A training stage's return value: figures, counts, and the small files worth logging."""
        return StageOutput(
            metrics=self.metrics(),
            records={"steps": self.steps, "train_tokens": self.train_tokens, "epochs": self.epochs},
            artifacts=(f"{MODEL_DIR}/{ck.MODEL_CONFIG}", f"{MODEL_DIR}/{ck.MODEL_WEIGHTS}"),
        )


def resolve_device(name: str, ctx: DistContext, section: str = "rnn") -> torch.device:
    """``auto``: CUDA (this rank's ``LOCAL_RANK`` GPU) when available, else CPU."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError(f"{section}.device is 'cuda' but no CUDA device is visible; set {section}.device: auto")
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


def seed_torch(seed: int) -> None:
    """Seed the generators training draws from (torch's CPU and CUDA ones). Python's ``random`` and
    numpy's global generator are left alone: training does not use them, and they belong to the process."""
    torch.manual_seed(seed)


def make_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr)
    groups = model.optimizer_groups(cfg.weight_decay) if hasattr(model, "optimizer_groups") else model.parameters()
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def check_ids(id_range: tuple[int, int], vocab_size: int, what: str) -> None:
    """Refuse ids outside ``[0, vocab_size)``; ``id_range`` is ``scan_ids``' ``(min, max)``."""
    low, high = id_range
    if high >= low and (high >= vocab_size or low < 0):
        raise InputError(
            f"{what} ids lie in [{low}, {high}] but the vocabulary has {vocab_size} "
            f"tokens; the shards and the tokenizer disagree, rebuild the shards"
        )


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, bptt: int, ctx: DistContext, amp: bool) -> float:
    """Mean next-token loss (nats) over the streams of ``data`` (``TokenStreams`` or a ``batchify`` tensor),
    summed over ranks when distributed."""
    streams = as_streams(data)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(streams.batch)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for w in range(n_windows(streams, bptt)):
        x, y = streams.window(w, bptt, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits, hidden = model(x, hidden)
        total[0] += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum"
        ).double()
        total[1] += y.numel()
    model.train(was_training)
    all_reduce_sum(total, ctx)
    return float(total[0] / total[1])


def _hidden_to_cpu(hidden: Optional[Hidden]):
    if hidden is None:
        return None
    return [h.detach().cpu() for h in (hidden if isinstance(hidden, tuple) else (hidden,))]


def _hidden_from_saved(saved, device: torch.device) -> Optional[Hidden]:
    if saved is None:
        return None
    hs = [h.to(device) for h in saved]
    return tuple(hs) if len(hs) == 2 else hs[0]


def train_model(
    family: ModelFamily,
    cfg,
    train_ids: Ids,
    valid_ids: Ids,
    vocab_size: int,
    out_dir: Path,
    *,
    valid_bytes: Optional[int] = None,
    on_step: Optional[StepCallback] = None,
    on_epoch: Optional[EpochCallback] = None,
    resume: bool = True,
    progress: Progress = None,
) -> TrainResult:
    """Train (or resume training) a ``family`` model over the shard windows; see the module docstring."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = init_from_env()
    device = resolve_device(cfg.device, ctx, family.section)
    amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if len(valid_ids) == 0:
        raise InputError(
            f"the valid split is empty; the {family.section} stage needs valid text to select the best epoch"
        )
    digest = hashlib.sha256()  # of the int64 ids, train then valid: a relaunch on other data is refused
    check_ids(scan_ids(train_ids, digest), vocab_size, "train")
    check_ids(scan_ids(valid_ids, digest), vocab_size, "valid")
    data_digest = digest.hexdigest()
    train = TokenStreams(train_ids, cfg.batch_size, rank=ctx.rank, world_size=ctx.world_size,
                         setting=f"{family.section}.batch_size")
    valid = TokenStreams(valid_ids, cfg.eval_batch_size, rank=ctx.rank, world_size=ctx.world_size,
                         setting=f"{family.section}.eval_batch_size")
    check_window_fits(train, cfg.bptt, "train", family.section)
    windows = n_windows(train, cfg.bptt)

    seed_torch(cfg.seed)  # same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = family.build(cfg, vocab_size).to(device)
    net = model
    if ctx.active:
        net = DistributedDataParallel(model, device_ids=[ctx.local_rank] if device.type == "cuda" else None)
    optimizer = make_optimizer(cfg, model)
    seed_torch(cfg.seed + ctx.rank)  # distinct dropout masks per rank

    schedule = {"lr": cfg.lr, "best_valid_loss": math.inf, "best_epoch": -1}
    pos = {"epoch": 0, "window": 0, "step": 0, "tokens": 0, "loss_sum": 0.0, "loss_windows": 0}
    history: list[dict] = []
    rates: list[float] = []
    hidden: Optional[Hidden] = None
    norms = np.zeros(0)
    ckpt_path = out_dir / ck.CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        state = _restore(ckpt_path, cfg, vocab_size, data_digest, ctx, model, optimizer, family, device)
        schedule, pos, history = dict(state["schedule"]), dict(state["position"]), list(state["history"])
        hidden = _hidden_from_saved(state["hidden"][ctx.rank], device)
        # the last epoch's diagnostics: a relaunch that has no epoch left to train still returns them
        norms = state.get("diagnostics", {}).get("grad_h_norms", torch.zeros(0)).numpy()
    for group in optimizer.param_groups:
        group["lr"] = schedule["lr"]
    resumed_from = pos["step"]
    limit = cfg.step_limit
    total_steps = cfg.epochs * windows if limit is None else min(limit, cfg.epochs * windows)

    def write_checkpoint() -> None:
        hiddens = gather_objects(_hidden_to_cpu(hidden), ctx)
        rngs = gather_objects(ck.capture_rng_state(device), ctx)
        if ctx.is_main:
            ck.save_checkpoint(ckpt_path, fmt=family.checkpoint_format, payload={
                "config": cfg.model_dump_json(), "vocab_size": vocab_size, "world_size": ctx.world_size,
                "data_sha256": data_digest, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule, "position": pos, "history": history, "hidden": hiddens, "rng": rngs,
                "diagnostics": {"grad_h_norms": torch.from_numpy(np.asarray(norms, dtype=np.float64))},
            })
        barrier(ctx)

    started = time.perf_counter()
    done = limit is not None and pos["step"] >= limit
    while pos["epoch"] < cfg.epochs and not done:
        net.train()
        epoch_start, epoch_tokens = time.perf_counter(), 0
        if pos["window"] == 0:
            hidden = model.init_hidden(cfg.batch_size)
        for w in range(pos["window"], windows):
            x, y = train.window(w, cfg.bptt, device)
            hidden = detach_hidden(hidden)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits, hidden = net(x, hidden)
            loss = next_token_loss(logits, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            if cfg.lr_schedule == "cosine":
                schedule["lr"] = cosine_lr(cfg.lr, pos["step"], total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = schedule["lr"]
            optimizer.step()
            loss_value = loss.item()
            step_tokens = y.numel() * ctx.world_size
            pos.update(window=w + 1, step=pos["step"] + 1, tokens=pos["tokens"] + step_tokens,
                       loss_sum=pos["loss_sum"] + loss_value, loss_windows=pos["loss_windows"] + 1)
            epoch_tokens += step_tokens
            if progress is not None and ctx.is_main:
                progress(pos["step"], total_steps)
            if on_step is not None and ctx.is_main:
                rate = epoch_tokens / max(time.perf_counter() - epoch_start, 1e-9)
                on_step(pos["step"], {"loss": loss_value, "lr": schedule["lr"], "tokens_per_s": rate})
            done = limit is not None and pos["step"] >= limit
            if cfg.checkpoint_every and pos["step"] % cfg.checkpoint_every == 0 and w + 1 < windows and not done:
                write_checkpoint()
            if done:
                break
        epoch_rate = epoch_tokens / max(time.perf_counter() - epoch_start, 1e-9)
        metrics, norms = _end_epoch(cfg, model, optimizer, valid, ctx, amp, schedule, pos, out_dir, family)
        if valid_bytes:
            metrics["valid_bpb"] = metrics["valid_loss"] * len(valid_ids) / (math.log(2) * valid_bytes)
        # history (kept in checkpoints and history.json) holds reproducible figures only, so equal training
        # writes equal bytes and the stage's output digest; the wall-clock rate goes to on_epoch and metrics
        history.append(metrics)
        rates.append(epoch_rate)
        if on_epoch is not None and ctx.is_main:
            on_epoch(pos["epoch"], {**metrics, "tokens_per_s": epoch_rate})
        pos.update(epoch=pos["epoch"] + 1, window=0, loss_sum=0.0, loss_windows=0)
        hidden = None
        write_checkpoint()

    seconds = time.perf_counter() - started
    trained_tokens = pos["tokens"]
    return TrainResult(
        best_valid_loss=schedule["best_valid_loss"], best_epoch=schedule["best_epoch"],
        epochs=pos["epoch"], steps=pos["step"], train_tokens=trained_tokens, seconds=seconds,
        tokens_per_s=float(np.mean(rates)) if rates else 0.0,  # epochs trained by this call
        resumed_from_step=resumed_from, history=tuple(history), model_dir=out_dir / MODEL_DIR,
        weights_sha256=weights_digest(model), grad_h_norms=tuple(float(v) for v in norms),
        parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )


def cosine_lr(base: float, step: int, total: int, floor: float = 0.05) -> float:
    """Cosine decay from ``base`` at step 0 to ``floor * base`` at ``total`` (Loshchilov & Hutter 2017,
    without restarts). A pure function of the step, so a resumed run follows the same curve.

    >>> cosine_lr(1.0, 0, 100), round(cosine_lr(1.0, 50, 100), 3), cosine_lr(1.0, 100, 100)
    (1.0, 0.525, 0.05)
    """
    progress = min(max(step / max(total, 1), 0.0), 1.0)
    return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the parameter and buffer bytes in name order (bit-level identity of two models)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _restore(path: Path, cfg, vocab_size, data_digest, ctx, model, optimizer, family: ModelFamily,
             device: torch.device) -> dict:
    """Load a checkpoint into ``model`` and ``optimizer`` and restore the RNG states; refuse a foreign one."""
    state = ck.load_checkpoint(path, cfg, vocab_size, fmt=family.checkpoint_format, section=family.section)
    if state["data_sha256"] != data_digest:
        raise StageError(
            f"{path} was written while training on other token ids (the shards changed); delete "
            f"the checkpoint to train afresh on the new shards"
        )
    if state["world_size"] != ctx.world_size:
        raise InputError(
            f"{path} was written by {state['world_size']} processes, this run has "
            f"{ctx.world_size}; relaunch with the same --nproc_per_node or delete the checkpoint"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    ck.restore_rng_state(state["rng"][ctx.rank], device)
    return state


def _end_epoch(cfg, model, optimizer, valid, ctx, amp, schedule, pos, out_dir, family) -> tuple[dict, np.ndarray]:
    """Validate, anneal or keep the best model, and measure the gradient diagnostics."""
    valid_loss = evaluate(model, valid, cfg.bptt, ctx, amp)
    improved = valid_loss < schedule["best_valid_loss"]
    if improved:
        schedule.update(best_valid_loss=valid_loss, best_epoch=pos["epoch"])
        if ctx.is_main:
            family.save_model(out_dir / MODEL_DIR, model)
    elif cfg.lr_schedule == "plateau":
        schedule["lr"] = schedule["lr"] / cfg.lr_anneal
        for group in optimizer.param_groups:
            group["lr"] = schedule["lr"]
    extra, norms = family.diagnostics(model, valid, cfg.bptt) if family.diagnostics else ({}, np.zeros(0))
    return {
        "train_loss": pos["loss_sum"] / max(pos["loss_windows"], 1),
        "valid_loss": valid_loss,
        "valid_ppl": math.exp(min(valid_loss, 700.0)),
        "valid_bits_per_token": valid_loss / math.log(2),
        "lr": schedule["lr"],
        "improved": float(improved),
        **extra,
    }, norms
