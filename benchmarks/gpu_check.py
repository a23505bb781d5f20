"""The GPU check (issue 28): every CUDA path of kshot_bench measured in one short run, on synthetic data (no
download), written to benchmarks/results/gpu_check-<device>.json with the device name.

  scripts/gpu_check.sh                      # on a GPU machine: under 8 minutes on one GPU
  python benchmarks/gpu_check.py --dry-run  # tiny sizes on whatever device there is (the test suite runs this)

Sections (each timed after untimed warm-up steps, CUDA synchronised around every timing):
  nb201_train    NB201 C=16 N=5 (the `nb201` preset's network, batch 256, a simplex-net step every 4 supernet
                 steps, warm-up skipped so the K-shot iteration is timed): `Trainer.iteration` images/s for
                 K=1 and K=4, fp32 and bf16 autocast (batches are channels_last on CUDA: runtime.device_layout)
  simplex_step   K=4: one supernet step against one simplex-net step by each strategy (batched, sequential,
                 threaded: m paths on m CPU threads driving the GPU), ms per step and the ratio to the
                 supernet step; a strategy that fails on the device is recorded with its error
  nb201_score    images/s of `score_arch` (K=4, each arch with its own code) at the run's default precision
  mbv2_step      the MobileNetV2 supernet of the `imagenet` preset at 224x224 (dry run: the `smoke` network at
                 32x32): one training step (forward, backward, SGD) for K=1 and K=8 on random paths, ms per step
                 and peak memory above that before the supernet was built (torch.cuda.max_memory_allocated;
                 on a CPU the process's peak RSS)
The last line printed is the results as one JSON object.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import RESULTS, emit, memory_mark, memory_peak  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.data import Splits  # noqa: E402
from kshot_bench.models import build_supernet  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import bf16_autocast, device_layout, tune_allocator, use_bf16  # noqa: E402
from kshot_bench.scoring import score_arch, score_precision  # noqa: E402
from kshot_bench.search_space import SPACES  # noqa: E402
from kshot_bench.train import Trainer  # noqa: E402

FULL = dict(nb201=dict(channels=16, cells=5, batch=256, steps=40, warm=5, score_images=2000, score_archs=20),
            mbv2=dict(preset="imagenet", batch=128, size=224, steps=10, warm=3))
DRY = dict(nb201=dict(channels=4, cells=1, batch=16, steps=2, warm=1, score_images=32, score_archs=2),
           mbv2=dict(preset="smoke", batch=8, size=32, steps=1, warm=1))


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def synthetic_splits(n: int, size: int = 32, classes: int = 10) -> Splits:
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    y = torch.as_tensor(rng.integers(0, classes, n))
    return Splits(x, y, x, y, "random images")


def nb201_trainer(tmp: Path, device, dims, k: int, precision: str) -> Trainer:
    cfg = from_preset("nb201", k=k, channels=dims["channels"], cells=dims["cells"], batch_size=dims["batch"],
                      warmup_epochs=0, epochs=1, snapshot_epochs="", train_precision=precision, simplex_interval=4)
    torch.manual_seed(0)
    n = dims["batch"] * (dims["steps"] + dims["warm"])
    return Trainer(cfg, tmp / f"nb201-k{k}-{precision}", synthetic_splits(n), device, progress=False)


def nb201_train(tmp: Path, device, dims) -> dict:
    out = {}
    for k in (1, 4):
        for precision in ("fp32", "bf16"):
            t = nb201_trainer(tmp, device, dims, k, precision)
            batches = [(x.to(device), y.to(device)) for _, (x, y) in zip(range(dims["steps"] + dims["warm"]),
                                                                         t.loader.epoch(0))]

            def run(part, first):
                for i, (x, y) in enumerate(part):
                    t.iteration(x, y, first + i)

            run(batches[:dims["warm"]], 0)
            s = timed(lambda: run(batches[dims["warm"]:], dims["warm"]), device)
            out[f"K{k}_{precision}"] = {"images_per_s": dims["batch"] * dims["steps"] / s,
                                        "simplex_step": t.simplex_mode, "steps": dims["steps"]}
            print(f"nb201 train K={k} {precision}: {out[f'K{k}_{precision}']['images_per_s']:.0f} images/s", flush=True)
    return out


def simplex_step(tmp: Path, device, dims) -> dict:
    t = nb201_trainer(tmp, device, dims, 4, "auto")
    x, y = next(iter(t.loader.epoch(0)))
    x, y = device_layout(x.to(device), device), y.to(device)
    reps = max(dims["steps"] // 2, 1)

    def per_step(fn) -> float:
        fn(0)  # untimed
        return 1000 * timed(lambda: [fn(i + 1) for i in range(reps)], device) / reps

    out = {"supernet_step_ms": per_step(lambda i: t.supernet_step(x, y, i))}
    for strategy, threads in (("batched", 0), ("sequential", 0), ("threaded", t.cfg.simplex_paths)):
        t.simplex_strategy, t.simplex_threads, t._workers = strategy, threads, None
        try:
            ms = per_step(lambda i: t.simplex_step(x, y, i))
            out[strategy] = {"ms": ms, "ratio_to_supernet_step": ms / out["supernet_step_ms"]}
        except Exception as e:  # recorded, not fatal: the check reports what runs on this device
            out[strategy] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=3)}
        print(f"simplex step {strategy}: {out[strategy]}", flush=True)
    return out


def nb201_score(tmp: Path, device, dims) -> dict:
    t = nb201_trainer(tmp, device, dims, 4, "auto")
    n, batch = dims["score_images"], min(500, dims["score_images"])
    g = torch.Generator().manual_seed(1)
    batches = [(device_layout(torch.randn(batch, 3, 32, 32, generator=g).to(device), device),
                torch.randint(0, 10, (batch,), generator=g).to(device)) for _ in range(n // batch)]
    rng = np.random.default_rng(0)
    archs = [t.space.sample(rng) for _ in range(dims["score_archs"])]
    bf16 = score_precision(t.cfg, device) == "bf16"
    with torch.no_grad():
        codes = t.codes(archs)
    score_arch(t.model, archs[0], codes[0], batches[:1], bf16)  # untimed
    s = timed(lambda: [score_arch(t.model, a, c, batches, bf16) for a, c in zip(archs, codes)], device)
    out = {"images_per_s": len(archs) * n / s, "archs_per_s": len(archs) / s, "images_per_arch": n,
           "precision": "bf16" if bf16 else "fp32"}
    print(f"nb201 score: {out['images_per_s']:.0f} images/s", flush=True)
    return out


def mbv2_step(device, dims) -> dict:
    space = SPACES.get("mbv2")
    out = {}
    for k in (1, 8):
        cfg = from_preset(dims["preset"], space="mbv2", k=k)
        torch.manual_seed(0)
        base = memory_mark(device)
        model = build_supernet(cfg).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        x = device_layout(torch.randn(dims["batch"], 3, dims["size"], dims["size"], device=device), device)
        y = torch.randint(0, 1000 if dims["preset"] == "imagenet" else 10, (dims["batch"],), device=device)
        rng = np.random.default_rng(0)
        code = torch.full((k,), 1.0 / k, device=device)
        bf16 = use_bf16(cfg.train_precision, device)

        def step():
            arch = space.sample(rng)
            opt.zero_grad(set_to_none=True)
            with bf16_autocast(device, bf16):
                logits = model(x, arch, code)
            F.cross_entropy(logits.float(), y).backward()
            opt.step()

        for _ in range(dims["warm"]):
            step()
        s = timed(lambda: [step() for _ in range(dims["steps"])], device)
        out[f"K{k}"] = {"ms_per_step": 1000 * s / dims["steps"], "images_per_s": dims["batch"] * dims["steps"] / s,
                        "peak_mb_above_start": memory_peak(device) - base,
                        "batch": dims["batch"], "size": dims["size"], "precision": "bf16" if bf16 else "fp32"}
        print(f"mbv2 step K={k}: {out[f'K{k}']}", flush=True)
        model = opt = None  # free them before the next K (step() is not called again)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out["K8_over_K1_time"] = out["K8"]["ms_per_step"] / out["K1"]["ms_per_step"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on any device (the suite's check)")
    p.add_argument("--device", default="auto", help="auto (cuda if present) | cpu | cuda")
    p.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/gpu_check-<device>.json)")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    tune_allocator()
    dims = DRY if args.dry_run else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    t0 = time.perf_counter()
    result = {"benchmark": "gpu_check", "device_name": name, "dry_run": args.dry_run, "sizes": dims,
              "machine": machine_info(device), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result["nb201_train"] = nb201_train(tmp, device, dims["nb201"])
        result["simplex_step"] = simplex_step(tmp, device, dims["nb201"])
        result["nb201_score"] = nb201_score(tmp, device, dims["nb201"])
    result["mbv2_step"] = mbv2_step(device, dims["mbv2"])
    result["wall_s"] = time.perf_counter() - t0
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    emit(result, "gpu_check", args.dry_run, out=args.out or RESULTS / f"gpu_check-{slug}{'-dry' if args.dry_run else ''}.json")


if __name__ == "__main__":
    main()
