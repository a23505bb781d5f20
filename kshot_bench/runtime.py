"""Process-level settings that make the CPU paths fast.

`tune_allocator`: glibc serves big allocations (a 64x16x32x32 float map is 4 MiB) with fresh
mmap'd pages and returns them on free, so every new activation pays page faults and kernel
zeroing; at scoring batch sizes that doubles the time of element-wise ops. Turning direct mmap off
and keeping freed memory (no trimming) lets the heap recycle the same pages (the gain is measured in
docs/design.md, "Process settings"). The cost: the process keeps its peak memory until it exits.
Called by the CLI and the benchmarks; a no-op off glibc.

`use_bf16`: the one rule behind every `auto` precision setting (scoring, training, retraining): bf16
autocast on CUDA, fp32 elsewhere.

`ThreadWorkers`: threads that each run whole small computations with one intra-op thread (the CPU
simplex-net step runs its m paths on them: train.simplex_loss_threaded).

`device_layout`: image batches in channels_last on CUDA (cuDNN's NHWC kernels, which bf16 tensor cores
want), unchanged elsewhere (the loaders' channels_last batches; narrow NB201 supernets turn them to NCHW
themselves, supernet/ops.py). The same numbers either way (tests/test_supernet.py checks both supernets).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Sequence, TypeVar

T = TypeVar("T")

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_done = False


def tune_allocator() -> bool:
    """Apply once per process; True when glibc accepted both settings."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok


def stop_on_sigterm() -> bool:
    """Treat SIGTERM (`kill`, a scheduler's stop, the end of a session) and, where the shell started us in the
    background with it ignored, SIGINT like Ctrl-C: the jobs catch KeyboardInterrupt, save their progress and
    exit, so the same command continues. Main thread only; False where signals cannot be set here."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return False

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, interrupt)
    return True


def pick_device(name: str = "auto"):
    """The torch device for `--device` (auto: CUDA when visible, else the CPU)."""
    import torch

    from kshot_bench.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA device is visible", fix="use --device cpu")
    return torch.device(name)


class ThreadWorkers:
    """`n` threads that run `fn(item)` for many items at once, each with one intra-op thread.

    Small computations (a 4-image path of the simplex-net step) use many cores poorly through intra-op
    parallelism; run side by side, one per core, they use them fully. Each item is computed on one
    intra-op thread whichever worker runs it, so its result does not depend on `n` or on the scheduling,
    and `map` returns the results in item order. torch's thread setting is per thread for the worker
    itself, but `torch.set_num_threads` also sets the default that new threads take: `map` restores the
    caller's setting when it returns. Autograd, grad mode and autocast state are per thread: `fn` must
    enter any autocast itself."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"ThreadWorkers needs n >= 1, got {n}")
        self.n = n
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="kshot-worker")

    def map(self, fn: Callable[..., T], items: Sequence) -> List[T]:
        import torch

        threads = torch.get_num_threads()

        def run(item):
            torch.set_num_threads(1)
            return fn(item)

        futures = [self._pool.submit(run, item) for item in items]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:  # after an error (or Ctrl-C): drop the items not started
                f.cancel()
            torch.set_num_threads(threads)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def use_bf16(setting: str, device) -> bool:
    """bf16 autocast for `setting` (auto | bf16 | fp32) on `device`: auto means CUDA only."""
    return setting == "bf16" or (setting == "auto" and device.type == "cuda")


def bf16_autocast(device, enabled: bool):
    """The bf16 autocast context every precision setting uses (a no-op context when not `enabled`)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def device_layout(x, device):
    """`x` (an N x C x H x W batch) in the memory layout that is fast on `device`: channels_last on CUDA."""
    import torch

    if device.type == "cuda" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def layout_name(device) -> str:
    return "channels_last" if device.type == "cuda" else "contiguous"


def epoch_generator(seed: int, epoch: int):
    """The CPU generator of one epoch of a loader: a pure function of (seed, epoch), so a run resumed
    mid-epoch draws the batches and augmentations it would have drawn (data.TensorLoader, FolderLoader)."""
    import numpy as np
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1))
    return g
