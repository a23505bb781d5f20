"""The paper's ablation grid on NB201 (Tables 5-6, Figs. 4 and 7): every cell is a normal rank run.

Cells: one-shot (K=1, once per seed and epoch budget: its code is always [1]) and, for every K > 1,
fixed K-shot (`uniform`), random K-shot (`random`) and K-shot with the simplex-net (`simplex`).
A cell whose `metrics.json` exists is finished and never run again; an interrupted cell continues
from its own checkpoint and partial scores, so the grid can be run in parts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

ABLATION_CODES = ("uniform", "random", "simplex")


@dataclass(frozen=True)
class Cell:
    k: int
    code: str
    seed: int
    epochs: Optional[int]

    @property
    def name(self) -> str:
        code = "oneshot" if self.k == 1 else self.code
        return f"k{self.k}-{code}" + (f"-e{self.epochs}" if self.epochs else "") + f"-s{self.seed}"


def cells(ks: Sequence[int], codes: Sequence[str], seeds: Sequence[int], epochs: Sequence[Optional[int]]) -> List[Cell]:
    out = []
    for e in epochs:
        for seed in seeds:
            for k in sorted(set(ks)):
                for code in (["uniform"] if k == 1 else codes):
                    out.append(Cell(k, code, seed, e))
    return out


def run_ablation(base_cfg, grid: List[Cell], out: Path, data_root, device, preset: str, progress: bool = True,
                 download: bool = True, log=print) -> List[Path]:
    from kshot_bench.rank import rank_job

    done = []
    for i, cell in enumerate(grid, 1):
        cell_dir = Path(out) / cell.name
        if (cell_dir / "metrics.json").exists():
            log(f"[{i}/{len(grid)}] {cell.name}: finished earlier, skipped")
            done.append(cell_dir)
            continue
        changes = {"k": cell.k, "code": cell.code, "seed": cell.seed}
        if cell.epochs:
            changes["epochs"] = cell.epochs
        cfg = base_cfg.replace(**changes)
        log(f"[{i}/{len(grid)}] {cell.name}: K={cell.k} code={cell.code} seed={cell.seed} epochs={cfg.epochs}")
        metrics, _ = rank_job(cfg, cell_dir, data_root, device, progress=progress, preset=preset, download=download,
                              command=f"kshot-bench ablate (cell {cell.name})")
        log(f"    tau {metrics['kendall_tau']:.3f}" if "kendall_tau" in metrics else
            f"    scores {metrics['score_mean']:.2f} +- {metrics['score_std']:.2f} (no ground truth in {cfg.space})")
        done.append(cell_dir)
    return done
