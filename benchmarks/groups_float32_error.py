"""float32 error of the batched and the sequential MBV2 simplex-net steps, against float64 of the same weights.

Why tests/test_groups.py allows the batched MBV2 step a float32 error up to 10x the sequential one's
(NB201: 2x): for each draw (simplex-net weights, paths), the simplex-net gradient of both steps in float32
and in float64 (the `smoke` MBV2 preset, 64x64 random images, 4 a group), each float32 gradient's largest
error relative to the float64 sequential gradient's largest entry. Prints one line per draw and the range.

  python benchmarks/groups_float32_error.py         # 12 draws, about 2 minutes on 2 cores
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.data import Splits  # noqa: E402
from kshot_bench.search_space import mbv2 as space  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402


def grads(t: Trainer, x, y, archs, dtype):
    t.model.to(dtype)
    t.codes.to(dtype)
    out = {}
    for name, fn in (("batched", t.simplex_loss_batched), ("sequential", t.simplex_loss_sequential)):
        t.codes.zero_grad(set_to_none=True)
        fn(x.to(dtype), y, archs)
        out[name] = torch.cat([p.grad.flatten().double() for p in t.codes.parameters()])
    return out


def main():
    rng = np.random.default_rng(0)
    images = torch.as_tensor(rng.integers(0, 256, (64, 3, 64, 64), dtype=np.uint8))
    labels = torch.as_tensor(rng.integers(0, 10, 64))
    ratios = []
    for k, m in ((2, 16), (4, 16), (2, 4)):
        for seed in range(4):
            cfg = from_preset("smoke", space="mbv2", k=k, simplex_paths=m, batch_size=4 * m)
            with tempfile.TemporaryDirectory() as run_dir:  # the Trainer's run folder; nothing is trained
                t = Trainer(cfg, Path(run_dir), Splits(images, labels, images, labels, "random images"),
                            torch.device("cpu"), progress=False)
            torch.manual_seed(1 + seed)
            with torch.no_grad():
                for p in t.codes.parameters():
                    p.normal_(0, 0.5)
            x, y = next(iter(t.loader.epoch(0)))
            prng = np.random.default_rng(k + 10 * seed)
            archs = [space.sample(prng) for _ in range(m)]
            g32, g64 = grads(t, x, y, archs, torch.float32), grads(t, x, y, archs, torch.float64)
            ref = g64["sequential"]
            err = {n: float((g - ref).abs().max() / ref.abs().max()) for n, g in g32.items()}
            ratios.append(err["batched"] / err["sequential"])
            print(f"K={k} m={m} draw {seed}: float32 error batched {err['batched']:.2e}, sequential "
                  f"{err['sequential']:.2e}, ratio {ratios[-1]:.2f}", flush=True)
    print(f"ratio batched/sequential over {len(ratios)} draws: {min(ratios):.2f} .. {max(ratios):.2f}")


if __name__ == "__main__":
    main()
