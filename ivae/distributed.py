"""Training in several processes under torchrun: the process group, the global batch, and
which process writes.

``torchrun --nproc_per_node=N -m ivae train ...`` starts N copies of ``ivae train`` with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; a plain
``ivae train`` has none of them and runs as a group of one, through exactly the code it ran
before (nothing here is called for one process but ``world()``).

The global batch: ``--batch-size`` is the batch one process would see; each of the N
processes takes its own 1/N of it (ivae.loader). A loss in which every item is compared with
every other (the implicit iVAE's density ratio, the contrastive InfoNCE) gathers the codes and
prior parameters of all N slices with gradients (``spanning``), as CLIP-style training does,
so the N processes optimise the one objective of a single process on the whole batch.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """The process group cannot be formed or has broken; the message says what to do."""


@dataclass(frozen=True)
class World:
    """This process's place in the group: rank ``rank`` of ``size`` (1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory."""
        return self.rank == 0


ALONE = World()  # a plain `ivae train`: one process, no group


def launched() -> World:
    """The group torchrun launched this process into (read from its environment)."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    try:
        return World(
            int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
        )
    except (KeyError, ValueError) as error:
        raise DistributedError(
            f"WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers ({error}); "
            "start distributed training with torchrun, or unset WORLD_SIZE for one process"
        ) from None


def start(device: torch.device, timeout_seconds: float) -> World:
    """Join the group (NCCL on CUDA, gloo on CPU); a group of one forms nothing."""
    world = launched()
    if world.size == 1 or dist.is_initialized():
        return world
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        with _stderr_held():  # the C++ store logs a trace per retry: our one line replaces it
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds))
    except (RuntimeError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(
            f"rank {world.rank} of {world.size} could not join the rendezvous at {where} "
            f"within {timeout_seconds:g} s ({first[:160]}); check that this address is "
            "reachable from every node and that all nodes were started with the same "
            "--nnodes and --rdzv-endpoint (the run directory was not changed)"
        ) from None
    return world


@contextlib.contextmanager
def _stderr_held():
    """File descriptor 2 into a temporary file; written out after all if nothing failed."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
    finally:
        os.close(saved)


def device_of(device: torch.device, world: World) -> torch.device:
    """One GPU per process on a machine: the one torchrun's LOCAL_RANK names."""
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# ---- the global batch -------------------------------------------------------------------
_spanning = False


@contextlib.contextmanager
def spanning(enabled: bool = True):
    """Inside: ``gather`` collects every process's slice of the batch (a training step).
    Outside (validation, evaluation, one process) it returns its input unchanged."""
    global _spanning
    before, _spanning = _spanning, enabled and dist.is_initialized()
    try:
        yield
    finally:
        _spanning = before


def spans() -> bool:
    """True inside a training step of several processes (``gather`` then gathers)."""
    return _spanning


def gather(*tensors: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], int]:
    """(B, ...) tensors of this process -> the (N*B, ...) global ones, rank order, and the
    offset of this process's rows in them. Gradients flow back to every slice's owner
    (torch.distributed.nn.functional.all_gather), so a loss over the global batch trains
    each process's share of the networks."""
    if not _spanning:
        return tensors, 0
    from torch.distributed.nn.functional import all_gather

    rank = dist.get_rank()
    with warnings.catch_warnings():  # "deprecated": its successor has no gradient yet
        warnings.simplefilter("ignore", FutureWarning)
        out = tuple(torch.cat(all_gather(t.contiguous()), dim=0) for t in tensors)
    return out, rank * len(tensors[0])


def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged value over the processes (every process must call it)."""
    if not dist.is_initialized() or not values:
        return values
    keys = list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    size = dist.get_world_size()
    return {k: float(v) / size for k, v in zip(keys, stacked.cpu(), strict=True)}


def any_process(flag: bool) -> bool:
    """True when ``flag`` is true in any process (every process must call it)."""
    if not dist.is_initialized():
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
