"""Where the NB201 simplex-net step's time goes: torch.profiler self time by kind of operation.

Protocol (k_overhead's setting: NB201 C=16 N=5, batch 64, K=4, m=16 paths of 4 images, supernet frozen):
a supernet step (one path, the whole batch), the batched simplex-net step and the sequential one, each
profiled over the same `--steps` seeded path sets after two warm-up steps, at the thread count torch was
given (`OMP_NUM_THREADS`). Reported per step, in ms of profiled self time, grouped as convolutions, batch
norm, data movement (index_select, index_add_, fill_, copy_, cat: in the batched step the channel blocks
moved between groups), ReLU, and the rest. The profiler adds a fixed cost to every operation, so steps made
of many small operations (the batched and sequential ones) are inflated more than the supernet step: read
the kinds of one step against each other and against the other simplex step, not as wall time (that is
benchmarks/k_overhead.py).

  python benchmarks/simplex_step_profile.py                      # the machine's default threads
  OMP_NUM_THREADS=1 python benchmarks/simplex_step_profile.py
The last line printed is the result as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from benchmarks.k_overhead import SupernetVariant, make_batch, paths, simplex_step  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.search_space import nb201 as space  # noqa: E402
from kshot_bench.simplex import make_code_source  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402

KINDS = {  # first match wins
    "convolution": ("convolution", "conv2d"),
    "batch_norm": ("batch_norm",),
    "data_movement": ("index_select", "index_add", "fill_", "copy_", "aten::cat"),
    "relu": ("threshold_backward", "clamp_min", "relu"),
}


def profiled_ms(run, steps: int) -> dict:
    """ms of profiled self time per step, by kind, of `run(i)` for i in range(steps)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            run(i)
    out = dict.fromkeys(list(KINDS) + ["other"], 0.0)
    for event in prof.key_averages():
        kind = next((k for k, keys in KINDS.items() if any(key in event.key for key in keys)), "other")
        out[kind] += event.self_cpu_time_total / 1e3 / steps
    out["total"] = sum(out.values())
    return {k: round(v, 1) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tune_allocator()  # as the CLI runs
    device = torch.device("cpu")
    torch.manual_seed(0)
    sv = SupernetVariant(args.k, device)
    x, y = make_batch(device)
    codes = make_code_source("simplex", args.k, space)
    opt = torch.optim.Adam(codes.parameters(), lr=1e-3)
    supernet_paths = paths(max(args.steps, 2), seed=7)  # the two warm-up steps use the first two
    runs = {
        "supernet": lambda i: sv.step(x, y, supernet_paths[i]),
        "batched": lambda i: simplex_step(sv.net, codes, opt, x, y, paths(16, 200 + i), "batched"),
        "sequential": lambda i: simplex_step(sv.net, codes, opt, x, y, paths(16, 200 + i), "sequential"),
    }
    result = {"benchmark": "simplex_step_profile",
              "protocol": f"NB201 C=16 N=5, batch 64, K={args.k}, m=16; torch.profiler self time per step (ms) "
                          f"over {args.steps} steps after 2 warm-up steps; the profiler inflates many small ops",
              "command": " ".join(["python"] + sys.argv),
              "machine": machine_info(device), "ms_per_step": {}}
    for name, run in runs.items():
        for i in range(2):
            run(i)
        result["ms_per_step"][name] = profiled_ms(run, args.steps)
        print(f"  {name}: {result['ms_per_step'][name]}", flush=True)
    emit(result, f"simplex_step_profile-t{torch.get_num_threads()}", quick=False, out=args.out)


if __name__ == "__main__":
    main()
