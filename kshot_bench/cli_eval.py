"""The `kshot-bench` commands that evaluate without training a supernet: `rank --scores` (anyone's ranking),
`compare` (runs or score files), `proxies` (zero-cost proxies), `cost`, `export-benchmark`. The parser and
the training commands are in cli.py."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from kshot_bench.errors import UserError


# ----------------------------------------------------------------------------- rank --scores, compare
def rank_scores(args) -> int:
    """`rank --scores FILE`: anyone's per-arch scores against the ground truth, the rank run's files."""
    from kshot_bench.config import RunConfig
    from kshot_bench.evaluate import evaluate_ranking, print_summary

    used = [flag for flag, value in (("--checkpoint", args.checkpoint), ("--k", args.k), ("--code", args.code),
                                     ("--archs", args.archs), ("--score-images", args.score_images),
                                     ("--data-root", args.data_root), ("--seed", args.seed), ("--set", args.sets),
                                     ("--score-protocol", args.score_protocol), ("--variant", args.variant),
                                     ("--score-code", args.score_code), ("--preset", args.preset))
            if value is not None]
    used += [flag for flag, on in (("--device", args.device != "auto"), ("--offline", args.offline)) if on]
    if used:
        raise UserError(f"--scores evaluates given scores; {', '.join(used)} belong to a supernet's rank run",
                        fix="drop " + ", ".join(used))
    if args.score is not None:
        raise UserError(f"--score {args.score} chooses a supernet's score (accuracy or loss); --scores evaluates the "
                        "file's scores as they are", fix="drop --score; for scores where smaller is better (a loss, a "
                                                         "rank) pass --lower-is-better")
    space, dataset = args.space or RunConfig.space, args.dataset or "cifar10"
    out = Path(args.out or f"runs/rank-{dataset}-{args.scores.stem}")
    print(f"rank: the scores in {args.scores} ({space}, {dataset}) -> {out}")
    metrics = evaluate_ranking(args.scores, space, dataset, args.truth, out, args.score_column,
                               command="kshot-bench " + shlex.join(args.argv), lower_is_better=args.lower_is_better,
                               overwrite=args.overwrite)
    print_summary(metrics)
    print(f"results: {out}/summary.md, metrics.json, baselines.json, predictions.csv, scatter.png")
    return 0


def cmd_compare(args) -> int:
    """Two rank runs, or score files (CSV / JSON, as for `rank --scores`) evaluated on the fly against the truth
    of the other run's space and dataset (or --space / --dataset / --truth)."""
    import tempfile

    from kshot_bench.evaluate import evaluate_ranking
    from kshot_bench.report_runs import load_rank_run
    from kshot_bench.compare_runs import compare

    pairs = [(args.a, args.b), *(tuple(p) for p in args.pair)]
    files = [str(p) for pair in pairs for p in pair if p.is_file()]
    if args.pair and files:
        raise UserError(f"--pair compares rank runs only; {', '.join(files)} is a score file",
                        fix="score it first (`kshot-bench rank --scores FILE --out DIR`) and pass DIR")
    runs = [load_rank_run(p) for p in (args.a, args.b) if (p / "metrics.json").is_file()]
    protocol = runs[0].p if runs else {}
    space = args.space or protocol.get("space") or "nb201"
    dataset = args.dataset or protocol.get("dataset") or "cifar10"
    truth = args.truth or protocol.get("truth")
    pred = runs[0].predictions() if runs else None
    only = pred["key"].tolist() if pred is not None else None  # a score file is evaluated on the run's archs
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, path in (("a", args.a), ("b", args.b)):
            if path.is_file():
                out = Path(tmp) / name
                evaluate_ranking(path, space, dataset, truth, out, only=only)
                path = out
            paths.append(path)
        lines = compare(*paths, common=args.common_archs)
    names = {str(Path(tmp) / "a"): str(args.a), str(Path(tmp) / "b"): str(args.b)}
    for tmp_name, given in names.items():
        lines = [line.replace(tmp_name, given) for line in lines]
    print("\n".join(lines))
    if args.pair:
        from kshot_bench.compare_runs import compare_seeds

        print("\n" + "\n".join(compare_seeds(pairs, common=args.common_archs)))
    return 0


# ----------------------------------------------------------------------------- export-benchmark
def cmd_export(args) -> int:
    from kshot_bench.ground_truth import export_official

    filled = export_official(Path(args.source), Path(args.out), progress=not args.quiet)
    print(f"wrote {args.out}: " + ", ".join(f"{c} {n:,}" for c, n in filled.items()))
    return 0


# ----------------------------------------------------------------------------- zero-cost proxies
def cmd_proxies(args) -> int:
    """Zero-cost proxies of an arch set's stand-alone networks (kshot_bench/proxies.py) into a CSV, resumable:
    rows already in --out are kept and not computed again. With a ground truth, their tau is printed."""
    import csv

    import numpy as np
    from tqdm import tqdm

    from kshot_bench.data import load_for
    from kshot_bench.datasets import DATASETS
    from kshot_bench.ground_truth import has_truth, space_truth
    from kshot_bench.metrics import kendall_tau
    from kshot_bench.models import NETWORKS
    from kshot_bench.proxies import PROXIES, arch_proxies, batch_images
    from kshot_bench.search_space import SPACES

    space = SPACES.get(args.space)
    names = args.proxies or ["synflow", "naswot", "snip"]
    for name in names:
        PROXIES.get(name)
    info = DATASETS.get(args.dataset)
    keys, archs, desc = space.arch_set(args.archs, args.seed, widths=False)
    from kshot_bench.config import RunConfig

    splits = load_for(RunConfig(space=args.space, dataset=args.dataset), args.data_root, download=not args.offline)
    x, y = batch_images(splits, info, args.batch)
    build = NETWORKS.get(args.space)
    out = Path(args.out)
    fields = [space.KEY, "arch_str"] + names
    done = {}
    if out.is_file():
        with open(out, newline="") as fh:
            done = {row[space.KEY]: row for row in csv.DictReader(fh) if all(row.get(n) for n in names)}
    print(f"proxies: {', '.join(names)} of {desc} ({args.space}, {args.dataset}; batch of {len(y)} training "
          f"images) -> {out}" + (f"; {len(done)} already there" if done else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.is_file() or not done
    with open(out, "w" if new else "a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(fields)
        for key, arch in tqdm(list(zip(keys, archs)), desc="proxies", unit="arch", disable=args.quiet, mininterval=1.0):
            if str(key) in done:
                continue
            scores = arch_proxies(lambda a: build(a, info.num_classes), arch, names, x, y)
            w.writerow([key, space.to_str(arch)] + [f"{scores[n]:.10g}" for n in names])
            fh.flush()
    if has_truth(space, args.dataset):
        with open(out, newline="") as fh:
            rows = {space.KEY_TYPE(r[space.KEY]): r for r in csv.DictReader(fh)}
        truth = space_truth(space, space.TRUTH[args.dataset])
        ks = [k for k in keys if k in rows]
        for n in names:
            tau = kendall_tau([float(rows[k][n]) for k in ks], truth[np.asarray(ks)])
            print(f"  {n}: Kendall's tau {tau:.3f} against {space.TRUTH[args.dataset]} over {len(ks):,} archs")
    print(f"results: {out}")
    return 0


# ----------------------------------------------------------------------------- cost
def cmd_cost(args) -> int:
    from kshot_bench.datasets import DATASETS
    from kshot_bench.search_space import SPACES

    import numpy as np

    space = SPACES.get(args.space)
    out = sys.stdout
    if space.NUM_ARCHS is not None:  # a space that lists its archs: by key (index), or all of them
        if args.sample is not None:
            raise UserError(f"--sample is for spaces too large to list; {space.NAME} has --all and --index",
                            fix="use --all, --index N [N ...] or --arch STR")
        info = DATASETS.get(args.dataset)
        if args.arch is not None:
            archs = [space.from_str(a) for a in args.arch]
        elif args.index is not None:
            archs = [space.from_key(i) for i in args.index]
        else:
            archs = space.arch_set("all", 0)[1]
        out.write(f"{space.KEY},arch_str,params,flops\n")
        for arch in archs:
            params, flops = space.cost(arch, info.num_classes, info.input_size)
            out.write(f"{space.key_of(arch)},{space.to_str(arch)},{params},{flops}\n")
        return 0
    if args.index is not None or args.all:
        raise UserError(f"--index and --all list archs; the {space.NAME} space is too large to list",
                        fix="use --arch STR [STR ...] or --sample N --seed S")
    if args.arch is not None:
        archs = [space.from_str(a) for a in args.arch]
    else:
        rng = np.random.default_rng([args.seed, 31])
        archs = [space.sample(rng, widths=not args.no_widths) for _ in range(args.sample)]
    classes, size = space.COST_CONVENTION
    out.write("arch_str,params,flops\n")
    for arch in archs:
        params, flops = space.cost(arch, classes, size)
        out.write(f"{space.to_str(arch)},{params},{flops}\n")
    return 0
