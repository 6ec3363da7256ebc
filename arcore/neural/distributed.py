"""Multi-process data parallel training: process-group setup from ``torchrun``'s environment.

``torchrun`` (``python -m torch.distributed.run``) starts one process per worker and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. ``init_from_env`` joins the group
(``nccl`` on CUDA, ``gloo`` on CPU); ``arcore.neural.train`` then wraps the model in ``DistributedDataParallel``,
gives each rank its own streams of the training data (see ``batchify``), averages gradients across ranks
in every backward pass, and lets rank 0 alone write checkpoints and the model, with every rank's hidden
state and RNG state gathered into the checkpoint so a relaunch resumes all ranks.

On CPU (what the tests run)::

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m arcore.neural.launch \\
        --train train.npy --valid valid.npy --vocab-size 4096 --out runs/rnn

On one machine with N GPUs, the same command with ``--nproc_per_node N``: rank ``r`` uses ``cuda:r``
(``LOCAL_RANK``), the backend is NCCL, and each GPU trains ``batch_size`` streams, so the effective
batch is ``N * batch_size`` (scale ``lr`` accordingly). Across machines add ``--nnodes``, ``--node_rank``
and ``--rdzv_endpoint host:port`` as torchrun documents. Mixed precision (bf16 autocast) is on for CUDA.
Results are identical across ranks by construction: DDP broadcasts rank 0's initial weights and
all-reduces gradients, so every rank applies the same update.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: ``world_size == 1`` means plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_from_env() -> DistContext:
    """Join the process group described by torchrun's environment variables, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op when not distributed)."""
    if ctx.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any, ctx: DistContext) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not ctx.active:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()
