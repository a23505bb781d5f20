"""Cost of K on the MobileNetV2 supernet at ImageNet size: step time and peak memory for K in {1, 2, 4, 8}.

The paper's Table 1 measures this setting (MobileNetV2 space, 224x224, +4% time and +5% memory at K=8).
Protocol (same design as benchmarks/k_overhead.py):
  * timing in one process: one supernet per K (1,000 classes, BN without affine, SGD nesterov 0.9 as
    the `imagenet` preset); every seeded path (ops and widths) is stepped by every K back to back, over
    several rounds, on one fixed batch of 224x224 inputs, after one untimed step of that path (its
    channel counts are new, and oneDNN builds kernels for new shapes on first use); ratios are total time over the same paired
    steps (images/s ratios), with the paired per-step medians beside them. Codes: uniform 1/K.
  * memory: one fresh process per K; every op of every layer is stepped once first (so every weight
    has its SGD momentum buffer: the steady state of a long run), then the largest path (k7e6_se at
    full width everywhere) and sampled paths; peak RSS minus the RSS before the supernet is built
    (glibc with a fixed 64 KiB mmap threshold, so freed tensors leave the RSS). On a GPU:
    torch.cuda.max_memory_allocated.
  * the floor any exact implementation has: each of the K-1 extra copies holds its weights and its SGD
    momentum for every op of the supernet (not only the path), 2 x (K-1) x the weights of one copy.
Targets (issue 11): time <= 1.05x at K=8; memory above the floor <= 5% of K=1's.

  python benchmarks/k_overhead_mbv2.py --batch 32          # CPU: 32 images of 224x224 (what fits a 2-core VM's time)
  python benchmarks/k_overhead_mbv2.py --batch 128 --device cuda --amp   # GPU: the paper's 128 per device, bf16
The last line printed is the result as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit, run_memory_child  # noqa: E402
from benchmarks.k_overhead import paired_ratio, timed, total_ratio  # noqa: E402

from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.search_space import mbv2 as space  # noqa: E402
from kshot_bench.supernet.mbv2 import KShotMBV2  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import pick_device  # noqa: E402


def paths(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def make_batch(device, batch: int, size: int = 224, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last).to(device)
    y = torch.randint(0, 1000, (batch,), generator=g).to(device)
    return x, y


class Variant:
    def __init__(self, k: int, device, amp: bool = False):
        self.k, self.amp, self.device = k, amp, device
        self.net = KShotMBV2(k, 1000).to(device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.12, momentum=0.9, nesterov=True, weight_decay=4e-5)
        self.code = torch.full((k,), 1.0 / k, device=device)

    def step(self, x, y, arch):
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = F.cross_entropy(self.net(x, arch, self.code), y)
        loss.backward()
        self.opt.step()


def every_op_paths():
    """Paths that together touch every op of every layer once (13 paths, full width)."""
    return [space.Arch((op,) * space.NUM_LAYERS, (space.FULL,) * space.NUM_WIDTHS) for op in range(len(space.OPS))]


MEMORY_CHILD = r"""
import sys, json, torch
sys.path.insert(0, {root!r})
from benchmarks.k_overhead_mbv2 import Variant, make_batch, paths, every_op_paths
from benchmarks._common import memory_mark, memory_peak
from kshot_bench.search_space import mbv2 as space
device = torch.device({device!r})
x, y = make_batch(device, {batch})
base = memory_mark(device)  # resets the peak
v = Variant({k}, device, {amp})
largest = space.Arch((11,) * space.NUM_LAYERS, (space.FULL,) * space.NUM_WIDTHS)
small_x, small_y = x[:2], y[:2]
for arch in every_op_paths():  # every weight gets its momentum buffer (cheaply, on 2 images)
    v.step(small_x, small_y, arch)
for arch in [largest] + paths({steps}, 1):
    v.step(x, y, arch)
peak = memory_peak(device)
print(json.dumps({{"base_mb": base, "peak_mb": peak}}))
"""


def measure_memory(k, batch, steps, device, amp):
    code = MEMORY_CHILD.format(root=str(ROOT), device=str(device), batch=batch, k=k, steps=steps, amp=amp)
    return run_memory_child(code, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="seeded paths per round")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    tune_allocator()
    started = time.time()
    print(f"k_overhead_mbv2: K {args.ks}, batch {args.batch} at 224x224, {args.rounds} rounds x {args.steps} paths, {device}",
          flush=True)
    x, y = make_batch(device, args.batch)
    variants = {f"k{k}": Variant(k, device, args.amp) for k in args.ks}
    for v in variants.values():  # warm-up: kernels for each shape
        for arch in paths(2, 99):
            v.step(x, y, arch)
    times = {name: [] for name in variants}
    first = next(iter(variants.values()))
    for r in range(args.rounds):
        for arch in paths(args.steps, 1 + r):
            # every path has its own channel counts (widths), so oneDNN builds new kernels for it on first use;
            # an untimed step builds them, else the first variant timed on each path pays for every variant
            first.step(x, y, arch)
            for name, v in variants.items():
                times[name].append(timed(device, v.step, x, y, arch))
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {1e3 * statistics.mean(t[-args.steps:]):.0f} ms" for n, t in times.items()), flush=True)
    del variants
    per_copy_mb = sum(p.numel() * 4 for p in KShotMBV2(1, 1000).parameters()) / 2**20
    memory = {} if args.no_memory else {f"k{k}": measure_memory(k, args.batch, 2, device, args.amp) for k in args.ks}
    step_s = {n: statistics.mean(t) for n, t in times.items()}
    result = {
        "benchmark": "k_overhead_mbv2",
        "protocol": f"MobileNetV2 (GreedyNAS SE) K-shot supernet, 1,000 classes, batch {args.batch} of 224x224, SGD nesterov; "
                    f"{args.rounds} rounds x {args.steps} seeded paths (ops and widths), each stepped by every K back to "
                    "back; ratios = total time over the same paired steps; memory: fresh process per K after every op "
                    "was stepped once (steady-state optimizer state), peak RSS (CPU) or max allocated (GPU)"
                    + ("; bf16 autocast" if args.amp else ""),
        "machine": machine_info(device),
        "batch": args.batch,
        "step_ms": {n: 1e3 * t for n, t in step_s.items()},
        "images_per_s": {n: args.batch / t for n, t in step_s.items()},
        "time_ratio": {n: total_ratio(times[n], times["k1"]) for n in times},
        "time_ratio_paired_median": {n: paired_ratio(times[n], times["k1"]) for n in times},
        "weights_mb_per_copy": per_copy_mb,
        "raw_step_s": times,
    }
    if memory:
        k1 = memory["k1"]["train_mb"]
        floor = {f"k{k}": 2 * (k - 1) * per_copy_mb for k in args.ks}
        result.update({
            "memory_mb": memory,
            "mem_ratio": {n: m["train_mb"] / k1 for n, m in memory.items()},
            "state_floor_mb": floor,
            "mem_ratio_floor": {n: 1 + floor[n] / k1 for n in memory},
            "mem_above_floor_pct_of_k1": {n: 100 * (m["train_mb"] - k1 - floor[n]) / k1 for n, m in memory.items()},
        })
    result["wall_s"] = time.time() - started
    print(f"\n{'K':<6}{'ms/step':>10}{'img/s':>9}{'time x':>9}" + (f"{'train MB':>11}{'mem x':>8}{'floor x':>9}{'above floor':>13}" if memory else ""))
    for n in times:
        line = f"{n:<6}{result['step_ms'][n]:>10.0f}{result['images_per_s'][n]:>9.1f}{result['time_ratio'][n]:>9.3f}"
        if memory:
            line += (f"{memory[n]['train_mb']:>11.0f}{result['mem_ratio'][n]:>8.3f}{result['mem_ratio_floor'][n]:>9.3f}"
                     f"{result['mem_above_floor_pct_of_k1'][n]:>12.1f}%")
        print(line)
    emit(result, f"k_overhead_mbv2-b{args.batch}", False, device.type + ("-bf16" if args.amp else ""), args.out)


if __name__ == "__main__":
    main()
