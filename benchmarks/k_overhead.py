"""Cost of K: supernet training-step time, images/s and peak memory for K in {1, 2, 4, 8, 12}.

Protocol (NB201 C=16, N=5, batch 64, CIFAR-size inputs, SGD nesterov as in training):
  * timing, all in one process: one supernet per K (and, per path, a stand-alone NB201 network of
    that path) built up front; every seeded path is stepped by every variant back to back (a paired
    design: drift on the machine, +-15% between minutes on this VM, hits all variants alike), over
    several rounds. Ratios are medians of the per-step paired ratios; images/s is the batch over the
    mean step time. A step is zero_grad + forward + backward + SGD step on a fixed batch.
    Codes: uniform 1/K (the merge costs the same for any code).
  * simplex-net step (m = 16 paths, b/m images each, supernet frozen) timed for K = 4 and K = 8,
    reported relative to the supernet step.
  * memory: one fresh process per K builds the supernet, steps once through an all-1x1 and an
    all-3x3 path (so every weight has its momentum buffer: the steady state of a long run), then
    the same paths; peak RSS minus the RSS just before the supernet is built (weights, optimizer
    state, gradients, activations), and the total peak RSS. glibc runs with a fixed 64 KiB mmap
    threshold there, so freed tensors leave the RSS. On a GPU: torch.cuda.max_memory_allocated.
Ratios are taken against K = 1 from the same run. Targets (issue 2): K = 8 at most 1.05x time and
memory; supernet step at least 0.95x the stand-alone network's images/s; K = 1 at least 1.3 x 175
images/s (a widely used NB201 reference supernet on this machine's 2 cores).

  python benchmarks/k_overhead.py            # full: K in {1,2,4,8,12}, 4 rounds x 16 paths
  python benchmarks/k_overhead.py --quick    # K in {1,8}, under 60 s
The last line printed is the results as one JSON object; `--out` also writes it (default
benchmarks/results/k_overhead[-quick]-<device>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.search_space import nb201 as space  # noqa: E402
from kshot_bench.supernet.nb201 import KShotNB201, NB201Network  # noqa: E402
from kshot_bench.train import machine_info, pick_device  # noqa: E402

REFERENCE_IMAGES_PER_S = 175.0
BATCH = 64


def paths(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def make_batch(device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last).to(device)
    y = torch.randint(0, 10, (BATCH,), generator=g).to(device)
    return x, y


def sgd(params):
    return torch.optim.SGD(params, lr=0.025, momentum=0.9, nesterov=True, weight_decay=5e-4)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SupernetVariant:
    def __init__(self, k, device):
        self.k, self.device = k, device
        self.net = KShotNB201(k).to(device)
        self.opt = sgd(self.net.parameters())
        self.code = torch.full((k,), 1.0 / k, device=device)

    def step(self, x, y, arch):
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.net(x, arch, self.code), y).backward()
        self.opt.step()


class StandaloneVariant:
    """A stand-alone NB201 network per path, built before timing (the supernet's speed limit)."""

    def __init__(self, archs, device):
        self.nets = {a: NB201Network(a).to(device).to(memory_format=torch.channels_last) for a in archs}
        self.opts = {a: sgd(n.parameters()) for a, n in self.nets.items()}

    def step(self, x, y, arch):
        opt = self.opts[arch]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.nets[arch](x), y).backward()
        opt.step()


def simplex_step(variant: SupernetVariant, codes, opt, x, y, archs, m=16):
    """The simplex-net step of train.Trainer.simplex_step, inlined to time it on a fixed batch."""
    params = list(codes.parameters())
    opt.zero_grad(set_to_none=True)
    for arch, xj, yj in zip(archs[:m], x.tensor_split(m), y.tensor_split(m)):
        (F.cross_entropy(variant.net(xj, arch, codes([arch])[0]), yj) / m).backward(inputs=params)
    opt.step()


def time_variants(ks, rounds, steps, device, with_simplex):
    from kshot_bench.simplex import make_code_source

    archs = paths(steps)
    x, y = make_batch(device)
    variants = {f"k{k}": SupernetVariant(k, device) for k in ks}
    variants["standalone"] = StandaloneVariant(archs, device)
    simplex = {}
    if with_simplex:
        for k in (4, 8):
            codes = make_code_source("simplex", k, space.encode, 30).to(device)
            simplex[f"simplex_k{k}"] = (variants.get(f"k{k}") or SupernetVariant(k, device), codes,
                                        torch.optim.Adam(codes.parameters(), lr=1e-3))
    # warm-up: oneDNN builds its kernels for each shape on first use
    for name, v in variants.items():
        for arch in archs[:3]:
            v.step(x, y, arch)
    for name, (v, codes, opt) in simplex.items():
        simplex_step(v, codes, opt, x, y, paths(16, 1))
    # paired design: every path is stepped by every variant back to back, so drift on the machine (a noisy
    # VM here: +-15% between rounds) hits all variants alike; ratios are medians of the per-step ratios
    times = {name: [] for name in list(variants) + list(simplex)}
    for r in range(rounds):
        for arch in archs:
            for name, v in variants.items():
                sync(device)
                t0 = time.perf_counter()
                v.step(x, y, arch)
                sync(device)
                times[name].append(time.perf_counter() - t0)
        for i in range(max(1, steps // 4)):
            simplex_paths = paths(16, 100 + r * 50 + i)
            for name, (v, codes, opt) in simplex.items():
                sync(device)
                t0 = time.perf_counter()
                simplex_step(v, codes, opt, x, y, simplex_paths)
                sync(device)
                times[name].append(time.perf_counter() - t0)
        n = len(archs)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{name} {1e3 * statistics.mean(t[-n:]):.0f} ms"
                                                     for name, t in times.items()), flush=True)
    return times


def paired_ratio(a, b) -> float:
    """Median over paired steps of a[i] / b[i]."""
    return statistics.median(x / y for x, y in zip(a, b))


MEMORY_CHILD = r"""
import sys, json, torch
sys.path.insert(0, {root!r})
from benchmarks.k_overhead import SupernetVariant, make_batch, paths, rss_mb
device = torch.device({device!r})
x, y = make_batch(device)
archs = paths({steps})
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) / 2**20
else:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS (VmHWM) to the current RSS
    base = rss_mb("VmRSS")
v = SupernetVariant({k}, device)
# steady state: first touch every weight once (all-conv paths), so every momentum buffer exists
for arch in [(2,) * 6, (3,) * 6] + archs:
    v.step(x, y, arch)
peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss_mb("VmHWM")
print(json.dumps({{"base_mb": base, "peak_mb": peak}}))
"""


def rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak since the last reset) of this process, MiB (Linux)."""
    import re

    with open("/proc/self/status") as fh:
        return int(re.search(field + r":\s+(\d+)", fh.read()).group(1)) / 1024


def measure_memory(k, steps, device):
    code = MEMORY_CHILD.format(root=str(ROOT), device=str(device), steps=steps, k=k)
    # a fixed mmap threshold makes glibc hand every tensor of 64 KiB or more straight back to the OS on free,
    # so the peak RSS follows the live tensors instead of the allocator's cached free space
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["train_mb"] = data["peak_mb"] - data["base_mb"]
    return data


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K in {1, 8}, fewer steps: under 60 s")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    tune_allocator()  # as the CLI runs (timing only: the memory children keep glibc's defaults, see measure_memory)
    ks = [1, 8] if args.quick else [1, 2, 4, 8, 12]
    rounds, steps = (2, 6) if args.quick else (4, 16)
    started = time.time()
    print(f"k_overhead: K {ks}, {rounds} rounds x {steps} paths, batch {BATCH}, NB201 C=16 N=5, {device}", flush=True)
    times = time_variants(ks, rounds, steps, device, with_simplex=not args.quick)
    step_s = {name: statistics.mean(t) for name, t in times.items()}  # over the same paths for every variant
    ips = {name: BATCH / t for name, t in step_s.items() if not name.startswith("simplex")}
    memory = {f"k{k}": measure_memory(k, min(steps, 8), device) for k in ks}
    base = step_s["k1"]
    result = {
        "benchmark": "k_overhead",
        "mode": "quick" if args.quick else "full",
        "protocol": f"NB201 C=16 N=5, batch {BATCH}, 32x32 inputs, SGD nesterov; {rounds} rounds x {steps} seeded paths, "
                    "each path stepped by every variant back to back, ratios = median of paired per-step ratios; memory: fresh process per K, peak RSS (CPU) or max allocated (GPU)",
        "machine": machine_info(device),
        "step_ms": {n: 1e3 * t for n, t in step_s.items()},
        "images_per_s": ips,
        "time_ratio": {f"k{k}": paired_ratio(times[f"k{k}"], times["k1"]) for k in ks},
        "time_ratio_of_means": {f"k{k}": step_s[f"k{k}"] / base for k in ks},
        "memory_mb": memory,
        "mem_ratio": {f"k{k}": memory[f"k{k}"]["train_mb"] / memory["k1"]["train_mb"] for k in ks},
        "mem_ratio_total_rss": {f"k{k}": memory[f"k{k}"]["peak_mb"] / memory["k1"]["peak_mb"] for k in ks},
        "supernet_vs_standalone": paired_ratio(times["standalone"], times["k1"]),
        "k1_vs_reference_175": ips["k1"] / REFERENCE_IMAGES_PER_S,
        "raw_step_s": times,
    }
    for k in (4, 8):
        if f"simplex_k{k}" in step_s:
            result[f"simplex_step_vs_supernet_step_k{k}"] = step_s[f"simplex_k{k}"] / step_s[f"k{k}"]  # not paired
    result["time_ratio_k8"] = result["time_ratio"]["k8"]
    result["mem_ratio_k8"] = result["mem_ratio"]["k8"]
    result["wall_s"] = time.time() - started

    print(f"\n{'variant':<12}{'ms/step':>10}{'img/s':>10}{'time x':>9}{'train MB':>10}{'mem x':>8}")
    for name in step_s:
        if name.startswith("simplex"):
            continue
        mem = memory.get(name)
        print(f"{name:<12}{1e3 * step_s[name]:>10.1f}{ips[name]:>10.1f}"
              f"{result['time_ratio'].get(name, float('nan')):>9.3f}" + (f"{mem['train_mb']:>10.0f}{mem['train_mb'] / memory['k1']['train_mb']:>8.3f}" if mem else ""))
    print(f"supernet K=1 vs stand-alone: {result['supernet_vs_standalone']:.3f}x images/s (target >= 0.95)")
    print(f"K=1 vs reference 175 img/s: {result['k1_vs_reference_175']:.2f}x (target >= 1.3)")
    print(f"K=8: time {result['time_ratio_k8']:.3f}x, memory {result['mem_ratio_k8']:.3f}x (targets <= 1.05)")
    emit(result, "k_overhead", args.quick, device.type, args.out)


if __name__ == "__main__":
    main()
