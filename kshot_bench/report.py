"""Reports from run directories only (never trains): ablation tables and the paper's Figures 4-7.

Inputs: rank run directories (`metrics.json`, `baselines.json`, `predictions.csv`, `train/log.csv`)
and search run directories (`result.json`), found under the given paths. Output: `report.md` and
PNG figures. Every table and figure names the runs it came from, their config hashes and the
protocol; a figure whose inputs are missing is listed with the reason instead of silently dropped.

Table/figure shapes (paper numbering), NB201 at the scale of the runs given:
  Table 4   Kendall's tau, mean +- std over seeds, per method and dataset, with the baselines
  Table 5/6 the ablation rows (one-shot, fixed K-shot, random K-shot, K-shot + simplex-net)
  Table 1   training time per epoch and peak memory against K
  Fig. 4    tau against K per code mode (and searched accuracy where search runs exist)
  Fig. 5    split tau against n_high, one line per method
  Fig. 6    histogram of the K code values of (up to) 1,000 archs of a simplex-net run
  Fig. 7    tau against K and training epochs
  scatter   predicted vs true per run
MobileNetV2 runs (no ground truth), at the scale of the runs given:
  Table 5/6 the paper's ablation rows (one-shot, + channel, fixed / random K-shot, + simplex-net, + channel,
            + r_c): each supernet's scores, the arch its search chose, and that arch's retrained top-1
  Table 1   training time per epoch and peak memory against K
  Table 2   searched archs retrained and evaluated
  Fig. 4    best supernet fitness against the number of archs searched, one line per search
  Fig. 6    code histogram of 1,000 archs of a simplex-net run
  Fig. 7    top-1 of the searched, retrained archs against K and supernet epochs
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from kshot_bench.loop import rewrite_log
from kshot_bench.report_figures import figures
from kshot_bench.report_runs import discover, md
from kshot_bench.report_tables import tables
from kshot_bench.results import fmt

RUN_FILES = ("metrics.json", "baselines.json", "config.json", "summary.md", "predictions.csv", "scatter.png",
             "train/log.csv", "train/config.json", "result.json", "pareto.csv", "history.csv", "log.csv",
             "eval-ema.json", "eval-raw.json")


def copy_run_files(roots: Sequence[Path], ranks, searches, dest: Path, extra: Sequence[Path] = ()) -> Dict[Path, str]:
    """Copy each run's small result files to dest/<run path relative to its root's parent>."""
    import shutil

    names = {}
    for run in [r.path for r in ranks] + [s.path for s in searches] + list(extra):
        root = next((Path(x) for x in roots if Path(run).resolve().is_relative_to(Path(x).resolve())), Path(run))
        rel = Path(run).resolve().relative_to(root.resolve().parent)
        names[run] = str(rel)
        for f in RUN_FILES:
            src = Path(run) / f
            target = dest / rel / f
            if src.is_file() and not (target.exists() and target.resolve() == src.resolve()):  # a report rebuilt in place
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
        log = next((r.log for r in ranks if r.path == run), None)
        if log and not (Path(run) / "train" / "log.csv").is_file():  # a snapshot's rows of its training run's log
            (dest / rel / "train").mkdir(parents=True, exist_ok=True)
            rewrite_log(dest / rel / "train" / "log.csv", log, list(log[0]))
        summary = Path(run).parent / "summary.json"  # a multi-seed search's aggregate
        target = dest / rel.parent / "summary.json"
        if (summary.is_file() and (Path(run).parent / "seed-0").exists()
                and not (target.exists() and target.resolve() == summary.resolve())):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(summary, target)
    return names


def build_report(paths: Sequence[Path], out: Path, command: str = "") -> Path:
    runs = discover(paths)
    ranks, searches = runs.ranks, runs.searches
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# kshot_bench report", "",
             f"Built by `{command or 'kshot-bench report'}` from {len(runs.scored)} rank runs and "
             f"{len(runs.all_searches)} search runs"
             + (f" and {len(runs.retrains)} retrained networks" if runs.retrains else "")
             + " (read only; nothing was trained for this report).", ""]
    lines += tables(runs)
    lines += ["## Figures", ""]
    missing = []
    for name, caption in figures(runs, out):
        if name:
            lines += [f"![{name}]({name})", "", caption, ""]
        else:
            missing.append(caption)
    if missing:
        lines += ["### Not drawn", ""] + [f"- {m}" for m in missing] + [""]
    copies = copy_run_files(paths, ranks, runs.all_searches, out / "runs",
                            extra=[r.path for r in runs.without_truth] + [r.path for r in runs.retrains])
    lines += ["## Runs", "", "Each run's small result files are copied under `runs/` beside this report.", ""]
    if ranks:
        lines += ["| run | dataset | method | K | seed | epochs | config | tau |", "|---|---|---|---|---|---|---|---|"]
        for r in ranks:
            lines.append(f"| [{copies[r.path]}](runs/{copies[r.path]}) | {r.p['dataset']} | {r.name} | {r.p['k']} | "
                         f"{r.p['seed']} | {r.p['epochs']} | {r.p['config_hash']} | {fmt(r.metrics['kendall_tau'])} |")
        lines.append("")
    if searches:
        lines += ["| search run | algo | fitness | seed | chosen arch | ground truth | command |", "|---|---|---|---|---|---|---|"]
        for sr in searches:
            res = sr.result
            lines.append(f"| [{copies[sr.path]}](runs/{copies[sr.path]}) | {res['algo']} | {res['fitness']} | {res['seed']} | "
                         f"`{md(res.get('arch_str', '?'))}` | {res['truth']:.2f} | `{md(res.get('protocol', {}).get('command', ''))}` |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
