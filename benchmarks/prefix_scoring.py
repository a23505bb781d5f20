"""Scoring with shared trunk prefixes (scoring.score_archs_shared) against one arch at a time
(scoring.score_arch), paired in one run, on a one-shot supernet of a chain-shaped space.

Protocol: the K=1 supernet of the space's `cpu` preset (NAS-Bench-Macro by default; fresh seeded weights: the time of a forward
pass does not depend on the values), `--chunks` chunks of scoring.SHARED_CHUNK archs, each a contiguous run of
the space's full arch set sorted by the supernet's stage keys (what `rank` scores together when every arch has
the same code), spread evenly over the sorted set; `--images` random images in batches of `--batch`. Each round
times both ways on every chunk (the order reverses every round) and checks that they give the same numbers.
Reported: images/s of each way (arch-images per second) and the median over rounds of the paired ratio.

  OMP_NUM_THREADS=1 python benchmarks/prefix_scoring.py [--rounds 1] [--chunks 4] [--space macro] [--quick]
The last line printed is the results as one JSON object (also written to benchmarks/results/).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402
from kshot_bench.config import from_preset  # noqa: E402
from kshot_bench.models import build_supernet  # noqa: E402
from kshot_bench.rundir import machine_info  # noqa: E402
from kshot_bench.runtime import tune_allocator  # noqa: E402
from kshot_bench.scoring import SHARED_CHUNK, score_arch, score_archs_shared  # noqa: E402
from kshot_bench.search_space import SPACES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="macro")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="1 round, 1 chunk of 32 archs, 64 images (a smoke run)")
    args = p.parse_args()
    chunk = SHARED_CHUNK
    if args.quick:
        args.rounds, args.chunks, args.images, args.batch, chunk = 1, 1, 64, 64, 32
    tune_allocator()  # as the CLI runs
    space = SPACES.get(args.space)
    torch.manual_seed(0)
    net = build_supernet(from_preset("cpu", space=args.space, k=1)).eval()  # the space's CPU preset's supernet
    _, archs, desc = space.arch_set("all", 0)
    archs = sorted(archs, key=net.stage_keys)
    starts = [round(i * (len(archs) - chunk) / max(1, args.chunks - 1)) for i in range(args.chunks)]
    chunks = [archs[s:s + chunk] for s in starts]
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(args.batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
                torch.randint(0, 10, (args.batch,), generator=g)) for _ in range(max(1, args.images // args.batch))]
    n_images = sum(len(y) for _, y in batches)
    code = torch.ones(1)
    ways = {"one_by_one": lambda c: [score_arch(net, a, code, batches) for a in c],
            "shared": lambda c: score_archs_shared(net, c, code, batches)}
    rates = {w: [] for w in ways}
    same = True
    for r in range(args.rounds):
        results = {}
        for w in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            t0 = time.perf_counter()
            results[w] = [ways[w](c) for c in chunks]
            rates[w].append(sum(map(len, chunks)) * n_images / (time.perf_counter() - t0))
        same = same and results["shared"] == results["one_by_one"]
    ratio = statistics.median(s / o for s, o in zip(rates["shared"], rates["one_by_one"]))
    print(f"{args.space}: one by one {statistics.median(rates['one_by_one']):.0f} arch-images/s, shared "
          f"{statistics.median(rates['shared']):.0f} (x{ratio:.2f}); same numbers: {same}", flush=True)
    result = {"benchmark": "prefix_scoring", "machine": machine_info(torch.device("cpu")),
              "protocol": {"space": args.space, "supernet": "K=1, fresh seeded weights", "archs": desc,
                           "chunks": len(chunks), "chunk": chunk, "chunk_starts_in_sorted_order": starts,
                           "images": n_images, "batch": args.batch, "rounds": args.rounds},
              "results": {"one_by_one_images_per_s": statistics.median(rates["one_by_one"]),
                          "shared_images_per_s": statistics.median(rates["shared"]), "paired_ratio_median": ratio,
                          "same_numbers": same, "raw": rates},
              "date": time.strftime("%Y-%m-%d")}
    emit(result, f"prefix_scoring-{args.space}-t{torch.get_num_threads()}", args.quick)


if __name__ == "__main__":
    main()
