"""The process group: one small object for every job that runs under torchrun, and a single process
when torchrun is not used.

Jobs: training (`train`, and `rank` when it trains: every process takes the same path each step on its
share of the global batch, gradients averaged by `average_grads`), scoring in `rank` and `search`.

`torchrun --nproc_per_node N kshot-bench ...` (and multi-node torchrun) sets RANK, LOCAL_RANK and
WORLD_SIZE; `Dist.from_env()` then joins the group: NCCL on CUDA, gloo on CPUs. A rank's device is
`cuda:LOCAL_RANK` on a GPU machine. Without those variables it is the single process (rank 0 of 1) and
nothing is initialised. Jobs split work with `share(items)` (rank r takes items r, r+N, r+2N, ...: the
same items whatever the thread timing), write only from the main rank, and meet at `barrier()`.
Results that every rank needs travel with `all_gather(obj)`; multi-node runs need the output
directory on a filesystem every node sees (scoring journals and results are files there).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Sequence

import torch


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(local)
        return cls(dist.get_rank(), dist.get_world_size(), local, backend)

    def device(self, name: str = "auto") -> torch.device:
        """The rank's device: `cuda:LOCAL_RANK` under NCCL, else what `name` asks for."""
        if self.backend == "nccl" and name in ("auto", "cuda"):
            return torch.device("cuda", self.local_rank)
        from kshot_bench.runtime import pick_device

        return pick_device(name)

    def share(self, items: Sequence) -> List:
        """This rank's items: every world_size-th, starting at its rank."""
        return list(items[self.rank::self.world_size])

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def all_gather(self, obj: Any) -> List[Any]:
        """Every rank's `obj`, in rank order (a list of one without a group)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def average_grads(self, params) -> None:
        """Replace every gradient by its mean over the processes: one all-reduce of the gradients that
        exist. Every process takes the same path each step, so the same parameters have gradients on
        all of them (the others stay None: off-path ops get no update anywhere). This is what DDP would
        do; DDP itself would need find_unused_parameters and a graph walk every step, because the path
        (and so the set of used parameters) changes with every step."""
        if not self.active:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        at = 0
        for g in grads:
            g.copy_(flat[at:at + g.numel()].view_as(g))
            at += g.numel()

    def sum(self, values: Sequence[float]) -> List[float]:
        """The sums over the processes of a few numbers (float64), e.g. the epoch's loss and image counts."""
        if not self.active:
            return list(values)
        import torch.distributed as dist

        dev = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        t = torch.tensor(list(values), dtype=torch.float64, device=dev)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
