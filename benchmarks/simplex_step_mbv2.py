"""The MobileNetV2 simplex-net step, batched (`forward_groups`), sequential and threaded, beside a supernet step.

Issue 15 asks for the batched simplex-net step on the MBV2 engine too. Protocol (one process, paired):
  * one K-shot MBV2 supernet and one simplex-net with its channel branch (the default `width_search`);
    per round m freshly sampled paths (ops and widths), as training samples them;
  * on the same batch: a supernet step (SGD nesterov, one path, code from the simplex-net, as the
    training step), the batched simplex-net step, the sequential one and, on a CPU, the threaded one
    (the CPU default: the paths side by side on one worker thread per torch thread; train.py) (m groups
    of b/m images, supernet frozen, Adam on the simplex-net), in an order that reverses between rounds so
    that kernel creation for new shapes (oneDNN builds them on first use; every path has its own widths,
    so training pays this too) and drift on the machine hit the simplex steps alike;
  * ratios are total time over the same rounds; the paired per-round medians beside them;
  * the per-path floor (benchmarks/k_overhead.py: per_path_pass), in the same rounds on the same paths: the
    m groups' passes alone, forward and backward to the weights, through a K = 1 supernet, one after
    another and, on a CPU, side by side on the same worker threads;
  * memory (CPU: peak RSS of a fresh process per mode, glibc with a fixed 64 KiB mmap threshold;
    GPU: max allocated): two steps of each mode after a first supernet step (the weights' gradients
    exist), above the memory before; the supernet step's (one path on the whole batch: the activations
    of one batch) is the yardstick for the batched step (issue 15: one batch's activations plus what
    the stacking needs); the sequential step holds one group's activations at a time.
Defaults are the `cpu` preset's setting (net scale 0.5, 32x32, batch 64, m = 16, K = 4, 10 classes).
The paper's setting per GPU: `--scale 1.0 --size 224 --batch 128 --paths 64 --classes 1000 --amp --device cuda`.

  python benchmarks/simplex_step_mbv2.py                # CPU, about 2 minutes
The last line printed is the result as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import functools
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
from benchmarks.k_overhead import paired_ratio, per_path_modes, per_path_pass, simplex_modes  # noqa: E402
from benchmarks.k_overhead import simplex_step, timed, total_ratio  # noqa: E402

from kshot_bench.runtime import ThreadWorkers, tune_allocator  # noqa: E402
from kshot_bench.search_space import mbv2 as space  # noqa: E402
from kshot_bench.simplex import make_code_source  # noqa: E402
from kshot_bench.supernet.mbv2 import KShotMBV2  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import pick_device  # noqa: E402


class Setup:
    def __init__(self, args, device):
        torch.manual_seed(0)
        self.device, self.amp = device, args.amp
        self.net = KShotMBV2(args.k, args.classes, scale=args.scale).to(device)
        self.codes = make_code_source("simplex", args.k, space, widths=True).to(device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=4e-5)
        self.simplex_opt = torch.optim.Adam(self.codes.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(args.batch, 3, args.size, args.size, generator=g).contiguous(
            memory_format=torch.channels_last).to(device)
        self.y = torch.randint(0, args.classes, (args.batch,), generator=g).to(device)
        self.workers = ThreadWorkers(min(torch.get_num_threads(), args.paths)) if device.type == "cpu" else None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def supernet_step(self, arch):
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            code = self.codes([arch])[0]
        with self.autocast():
            loss = F.cross_entropy(self.net(self.x, arch, code), self.y)
        loss.backward()
        self.opt.step()

    def simplex_step(self, archs, mode):
        simplex_step(self.net, self.codes, self.simplex_opt, self.x, self.y, archs, mode, self.workers, self.autocast)

    @functools.cached_property
    def floor_net(self):
        """The K = 1 supernet of the per-path floor (k_overhead.per_path_pass), built on first use: the memory
        children never need it."""
        return KShotMBV2(1, self.net.num_classes, scale=self.net.scale).to(self.device)

    def per_path_pass(self, archs, mode):
        per_path_pass(self.floor_net, self.x, self.y, archs, mode, self.workers, self.autocast)


def paths(n: int, seed: int, full_width: bool = False):
    """n seeded paths (ops and widths; `full_width`: every width 1.0, so the batched step pads nothing)."""
    rng = np.random.default_rng(seed)
    return [space.sample(rng, widths=not full_width) for _ in range(n)]


MEMORY_CHILD = r"""
import sys, json, types, torch
sys.path.insert(0, {root!r})
from benchmarks.simplex_step_mbv2 import Setup, paths
from benchmarks._common import memory_mark, memory_peak
args = types.SimpleNamespace(**{args!r})
device = torch.device({device!r})
s = Setup(args, device)
s.supernet_step(paths(1, 7, args.full_width)[0])  # the supernet's gradients exist, as in training
base = memory_mark(device)  # resets the peak
for r in range(2):
    if {mode!r} == "supernet":
        s.supernet_step(paths(args.paths, 50 + r, args.full_width)[0])
    else:
        s.simplex_step(paths(args.paths, 50 + r, args.full_width), {mode!r})
peak = memory_peak(device)
print(json.dumps({{"base_mb": base, "peak_mb": peak}}))
"""


def measure_memory(args, device, mode):
    keys = ("k", "classes", "scale", "batch", "size", "paths", "amp", "full_width")
    code = MEMORY_CHILD.format(root=str(ROOT), args={k: getattr(args, k) for k in keys}, device=str(device), mode=mode)
    return run_memory_child(code, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--paths", type=int, default=16, help="m, the paths of one simplex-net step")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--full-width", action="store_true", help="every path at width 1.0 (nothing to pad)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--note", default="", help="the machine's conditions, written into the result (e.g. other load)")
    args = parser.parse_args()
    if args.batch % args.paths:
        parser.error(f"--batch {args.batch} does not split into --paths {args.paths} equal groups")
    device = pick_device(args.device)
    tune_allocator()
    started = time.time()
    print(f"simplex_step_mbv2: K={args.k}, scale {args.scale}, {args.size}x{args.size}, batch {args.batch}, "
          f"m={args.paths}, {args.rounds} rounds, {device}", flush=True)
    s = Setup(args, device)
    modes = simplex_modes(device)
    # the simplex steps and, named per_path_<mode>, the per-path floor of the exact per-path steps
    steps = {**{mode: (s.simplex_step, mode) for mode in modes},
             **{f"per_path_{mode}": (s.per_path_pass, mode) for mode in per_path_modes(device)}}
    for step, mode in steps.values():  # warm-up
        step(paths(args.paths, 999, args.full_width), mode)
    s.supernet_step(paths(1, 998, args.full_width)[0])
    times = {name: [] for name in ("supernet", *steps)}
    for r in range(args.rounds):
        archs = paths(args.paths, 1 + r, args.full_width)
        times["supernet"].append(timed(device, s.supernet_step, archs[0]))
        for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            times[name].append(timed(device, steps[name][0], archs, steps[name][1]))
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {1e3 * t[-1]:.0f} ms" for n, t in times.items()),
              flush=True)
    memory = {} if args.no_memory else {mode: measure_memory(args, device, mode) for mode in ("supernet", *modes)}
    result = {
        "benchmark": "simplex_step_mbv2",
        "protocol": f"MobileNetV2 K={args.k} supernet at net scale {args.scale}, {args.classes} classes, batch "
                    f"{args.batch} of {args.size}x{args.size}; simplex-net step over m={args.paths} paths of "
                    f"{args.batch // args.paths} images (channel branch on, "
                    f"{'every width 1.0' if args.full_width else 'sampled widths'}), {', '.join(modes)}, "
                    f"beside a supernet step on the same batch; {args.rounds} rounds of fresh paths, simplex modes in "
                    "an order reversed every other round; ratios = total time over the same rounds"
                    + ("; bf16 autocast" if args.amp else ""),
        "command": " ".join(["python"] + sys.argv),
        "machine": machine_info(device),
        "note": args.note,
        "step_ms": {n: 1e3 * statistics.mean(t) for n, t in times.items()},
        "batched_vs_sequential": total_ratio(times["batched"], times["sequential"]),
        "batched_vs_sequential_paired_median": paired_ratio(times["batched"], times["sequential"]),
        "simplex_step_vs_supernet_step": {m: total_ratio(times[m], times["supernet"]) for m in modes},
        "per_path_floor_vs_supernet_step": {m: total_ratio(times[f"per_path_{m}"], times["supernet"])
                                            for m in per_path_modes(device)},
        "simplex_step_vs_per_path_floor": {m: total_ratio(times[m], times[f"per_path_{m}"]) for m in per_path_modes(device)},
        "raw_step_s": times,
    }
    if memory:
        result["memory_mb"] = memory
    result["wall_s"] = time.time() - started
    print(f"\n{'step':<20}{'ms':>8}{'x supernet':>12}" + (f"{'MB':>8}" if memory else ""))
    for n, t in times.items():
        print(f"{n:<20}{result['step_ms'][n]:>8.0f}{total_ratio(t, times['supernet']):>12.2f}"
              + (f"{memory[n]['train_mb']:>8.0f}" if n in memory else ""))
    print(f"batched / sequential: {result['batched_vs_sequential']:.2f}x (paired median "
          f"{result['batched_vs_sequential_paired_median']:.2f}x)")
    emit(result, f"simplex_step_mbv2-s{args.scale:g}-{args.size}-b{args.batch}-m{args.paths}"
         + ("-fullwidth" if args.full_width else ""), False,
         device.type + ("-bf16" if args.amp else ""), args.out)


if __name__ == "__main__":
    main()
