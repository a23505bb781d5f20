"""float32 error of the batched and the sequential simplex-net steps, against float64 of the same weights.

For each draw (simplex-net weights, paths; random images, the `smoke` preset: NB201 C=16 N=2 at 32x32,
MobileNetV2 scale 0.25 at 64x64, 4 images a group on MBV2), both steps run in float32 and in float64. Two
measures of each float32 step's error, relative to the float64 sequential step:

- `largest`: the largest error of the simplex-net gradient over its largest entry;
- `median_group`: for each group (path), the largest error of the gradient into its code over the largest
  entry of that gradient in any group; the median over the groups.

Why tests/test_groups.py judges float32 by `median_group`: a ReLU (or hardswish) input within float32
rounding of 0 can land on the other side of the kink in float32, and then the gradient through that unit
differs by a whole term, not by rounding. It happens in either step, to one group at a time, more often
with more units (MobileNetV2) and at 2 threads than at 1 (their sums round differently). Seen on the
test's own draw (MBV2, K=4, m=4) at 2 threads: a head-BN output of +1.1e-5 in float64 was -1.5e-5 in the
batched float32 step, the ReLU dropped its gradient, and the `largest` error was 307x the sequential
step's, while every other group's error matched. `largest` follows such flips; the median over groups
ignores one flip and still moves with a flaw that touches every group (a cast to a lower precision, a
lost term). The float64 agreement (1e-10) is the equivalence test.

  python benchmarks/groups_float32_error.py               # 2 spaces x 4 (K, m) x 3 draws, 1 thread
  python benchmarks/groups_float32_error.py --threads 2
  python benchmarks/groups_float32_error.py --flaw        # the batched step's conv weights rounded to bf16

`--flaw` plants the kind of flaw the float32 check is there for (each grouped convolution's merged weights
rounded through bfloat16 in the batched step only), to show how far it moves both measures.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.data import Splits  # noqa: E402
from kshot_bench.search_space import mbv2, nb201  # noqa: E402
from kshot_bench.supernet.groups import GroupStack  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402

SPACES = {"nb201": nb201, "mbv2": mbv2}


def make_trainer(run_dir: Path, k: int, m: int, space: str = "nb201", **changes) -> Trainer:
    """A `smoke` Trainer on 64 random images: NB201 (2 cells a stage, batch 32, 32x32) or MobileNetV2
    (4 images a group at 64x64: at 32x32 its last BN layers see 4 values a channel); `changes` to the config."""
    if space == "nb201":
        cfg = from_preset("smoke", k=k, simplex_paths=m, batch_size=32, cells=2, **changes)
    else:
        cfg = from_preset("smoke", space="mbv2", k=k, simplex_paths=m, batch_size=4 * m, **changes)
    size = 32 if space == "nb201" else 64
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (64, 3, size, size), dtype=np.uint8))
    y = torch.as_tensor(rng.integers(0, 10, 64))
    return Trainer(cfg, run_dir, Splits(x, y, x, y, "random images"), torch.device("cpu"), progress=False)


def step_grads(t: Trainer, x, y, archs, dtype,
               steps=("batched", "sequential")) -> Dict[str, Tuple[float, torch.Tensor, torch.Tensor]]:
    """Per step (of "batched", "sequential", "threaded"), in `dtype`: (loss, the simplex-net gradient
    flattened, the gradient into each group's code `[m, K]`), all float64."""
    t.model.to(dtype)
    t.codes.to(dtype)
    source, out = t.codes.forward, {}
    fns = {"batched": t.simplex_loss_batched, "sequential": t.simplex_loss_sequential,
           "threaded": t.simplex_loss_threaded}
    position = {id(a): j for j, a in enumerate(archs)}
    for name in steps:
        fn, codes = fns[name], {}

        def keep(archs_):  # one call for all groups (batched) or one per group, in any thread
            c = source(archs_)
            c.retain_grad()
            codes[position[id(archs_[0])]] = c
            return c

        t.codes.forward = keep
        t.codes.zero_grad(set_to_none=True)
        try:
            loss = fn(x.to(dtype), y, archs)
        finally:
            del t.codes.forward  # back to the class's forward
        grad = torch.cat([p.grad.flatten().double() for p in t.codes.parameters()])
        out[name] = (loss, grad, torch.cat([codes[j].grad for j in sorted(codes)]).double())
    return out


def errors(f32: Dict, f64: Dict) -> Dict[str, Dict[str, float]]:
    """Each float32 step's `largest` and `median_group` error against the float64 sequential step."""
    _, grad, code_grad = f64["sequential"]
    out = {}
    for name, (_, g, c) in f32.items():
        group = (c - code_grad).abs().amax(1) / code_grad.abs().max()
        out[name] = {"largest": float((g - grad).abs().max() / grad.abs().max()),
                     "median_group": statistics.median(group.tolist())}
    return out


def draw(space: str, k: int, m: int, seed: int) -> Dict:
    with tempfile.TemporaryDirectory() as run_dir:  # the Trainer's run folder; nothing is trained
        t = make_trainer(Path(run_dir), k, m, space)
    torch.manual_seed(1 + seed)
    with torch.no_grad():  # a trained-looking simplex-net: codes away from uniform
        for p in t.codes.parameters():
            p.normal_(0, 0.5)
    x, y = next(iter(t.loader.epoch(0)))
    prng = np.random.default_rng(k + 10 * seed)
    archs = [SPACES[space].sample(prng) for _ in range(m)]
    err = errors(step_grads(t, x, y, archs, torch.float32), step_grads(t, x, y, archs, torch.float64))
    row = {"space": space, "k": k, "m": m, "draw": seed}
    for measure in ("largest", "median_group"):
        for name in ("batched", "sequential"):
            row[f"{measure}_{name}"] = err[name][measure]
        row[f"{measure}_ratio"] = err["batched"][measure] / err["sequential"][measure]
    return row


def plant_bf16_flaw() -> None:
    """The batched step's grouped convolutions use their float32 weights rounded to bfloat16."""
    conv = GroupStack.conv_merged

    def rounded(t, w, *args, **kwargs):
        return conv(t, w.to(torch.bfloat16).to(w.dtype) if w.dtype == torch.float32 else w, *args, **kwargs)

    GroupStack.conv_merged = staticmethod(rounded)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--flaw", action="store_true", help="round the batched step's conv weights through bf16")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.flaw:
        plant_bf16_flaw()
    start, rows = time.time(), []
    for space in SPACES:
        for k, m in ((2, 4), (4, 4), (2, 16), (4, 16)):
            for seed in range(args.draws):
                rows.append(draw(space, k, m, seed))
                r = rows[-1]
                print(f"{space} K={k} m={m} draw {seed}: batched/sequential largest {r['largest_ratio']:.2f} "
                      f"({r['largest_batched']:.1e} / {r['largest_sequential']:.1e}), median group "
                      f"{r['median_group_ratio']:.2f} ({r['median_group_batched']:.1e} / "
                      f"{r['median_group_sequential']:.1e})", flush=True)
    summary = {}
    for space in SPACES:
        for measure in ("largest", "median_group"):
            ratios = [r[f"{measure}_ratio"] for r in rows if r["space"] == space]
            summary[f"{space}_{measure}_ratio"] = [min(ratios), statistics.median(ratios), max(ratios)]
    result = {"benchmark": "groups_float32_error", "flaw": "bf16 conv weights (batched)" if args.flaw else None,
              "command": " ".join(["python"] + sys.argv),
              "machine": machine_info(torch.device("cpu")), "seconds": round(time.time() - start, 1),
              "ratio_min_median_max": summary, "draws": rows}
    emit(result, f"groups_float32_error-t{args.threads}{'-flaw' if args.flaw else ''}", quick=False)


if __name__ == "__main__":
    main()
