"""Scoring throughput of `kshot-bench rank`: archs/s and images/s with 1 process against N processes
(torchrun), and the projected time to rank all 15,625 NB201 archs at the `nb201` protocol.

Protocol: an NB201 supernet at the paper's skeleton (C=16, N=5, K=4; weights as initialised: scoring
costs the same for any weights) saved as a checkpoint; `kshot-bench rank --checkpoint` scores the same
seeded arch sample on the same images, once in one process with T threads, once under
`torchrun --nproc_per_node N` with T/N threads per process (the same cores in all), on this machine's
device. The time is the rank job's own scoring time (`score_s` in metrics.json: codes, forward passes,
journal), not process start-up. Projection: 15,625 archs x 25,000 images (every image of the NB201 valid
half, the `nb201` preset) at the measured images/s.

  python benchmarks/rank_throughput.py --archs 60 --images 1000            # CPU here: 1 vs 2 processes
  python benchmarks/rank_throughput.py --nproc 8 --threads 8 --device cuda # a GPU machine: 1 vs 8 GPUs
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.models import build_code_source, build_supernet  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import pick_device  # noqa: E402

ALL_ARCHS, NB201_IMAGES = 15625, 25000


def write_checkpoint(path: Path, k: int) -> None:
    cfg = from_preset("nb201", k=k)
    torch.manual_seed(0)
    state = {"config": cfg.to_dict(), "model": build_supernet(cfg).state_dict(),
             "codes": build_code_source(cfg).state_dict(), "epochs": 0}
    torch.save(state, path)


def score(cmd, threads: int, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    done = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"score_s": metrics["protocol"]["score_s"], "wall_s": time.perf_counter() - t0,
            "world_size": metrics["protocol"]["world_size"], "tau": metrics["kendall_tau"],
            "predictions": (out / "predictions.csv").read_text()}


def differences(a: str, b: str) -> dict:
    """How far the two predictions.csv files differ per arch (score: top-1 % on the images; val_loss).
    With another thread count per process the float reductions run in another order, and an untrained
    supernet's near-tied logits can flip an image's argmax; the tests compare equal thread counts."""
    import csv
    import io

    ra, rb = ({r["index"]: r for r in csv.DictReader(io.StringIO(t))} for t in (a, b))
    diff_score = [abs(float(ra[k]["score"]) - float(rb[k]["score"])) for k in ra]
    diff_loss = [abs(float(ra[k]["val_loss"]) - float(rb[k]["val_loss"])) for k in ra]
    return {"same_archs": ra.keys() == rb.keys(), "archs_with_other_score": sum(d > 0 for d in diff_score),
            "max_score_diff_pct": max(diff_score), "max_val_loss_diff": max(diff_loss)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=60)
    parser.add_argument("--images", type=int, default=1000, help="scoring images per arch")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads in all (split across the processes)")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=None, help="CIFAR-10 data (default: the embedded sample: 1,000 images)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "supernet.pt"
        write_checkpoint(ckpt, args.k)
        common = ["rank", "--checkpoint", str(ckpt), "--archs", str(args.archs), "--score-images", str(args.images),
                  "--set", f"score_batch={args.batch}", "--device", args.device, "--quiet"]
        if args.data_root:
            common += ["--data-root", args.data_root]
        cli = [sys.executable, "-m", "kshot_bench.cli"]
        torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", str(args.nproc),
                    "-m", "kshot_bench.cli"]
        one = score(cli + common, args.threads, tmp / "one")
        many = score(torchrun + common, max(1, args.threads // args.nproc), tmp / "many")
    images = args.archs * args.images
    result = {
        "benchmark": "rank_throughput",
        "protocol": f"NB201 supernet C=16 N=5 K={args.k} (initial weights), {args.archs} seeded archs x {args.images} "
                    f"images, batches of {args.batch}; 1 process x {args.threads} threads vs {args.nproc} processes x "
                    f"{max(1, args.threads // args.nproc)} threads (torchrun); time = the rank job's scoring time",
        "machine": machine_info(device),
        "one_process": {"score_s": one["score_s"], "archs_per_s": args.archs / one["score_s"],
                        "images_per_s": images / one["score_s"], "wall_s": one["wall_s"]},
        f"{args.nproc}_processes": {"score_s": many["score_s"], "archs_per_s": args.archs / many["score_s"],
                                    "images_per_s": images / many["score_s"], "wall_s": many["wall_s"]},
        "speedup": one["score_s"] / many["score_s"],
        "identical_predictions": one["predictions"] == many["predictions"],
        "score_differences": differences(one["predictions"], many["predictions"]),
        "projected_hours_all_archs_nb201_protocol": {
            "one_process": ALL_ARCHS * NB201_IMAGES / (images / one["score_s"]) / 3600,
            f"{args.nproc}_processes": ALL_ARCHS * NB201_IMAGES / (images / many["score_s"]) / 3600},
        "wall_s": time.time() - started,
    }
    print(f"1 process: {result['one_process']['images_per_s']:.0f} images/s; {args.nproc} processes: "
          f"{result[f'{args.nproc}_processes']['images_per_s']:.0f} images/s (x{result['speedup']:.2f}); "
          f"identical predictions: {result['identical_predictions']} ({result['score_differences']})")
    emit(result, "rank_throughput", False, device.type, args.out)


if __name__ == "__main__":
    main()
