"""Architecture search: NSGA-II evolution under a hard FLOPs limit (paper Sec. 3), and random search.

NSGA-II as the paper describes it (population 50, 20 generations, top-20 parents, mutation and
crossover, hard FLOPs limit), with two objectives, fitness (max) and FLOPs (min):
  1. the first population: `population` archs drawn uniformly among those within the limit;
  2. each generation: the `parents` archs of the population with the highest fitness are the
     parents; `population` children are made, half by mutating a random parent, half by crossing
     two random parents; a child over the FLOPs limit or already evaluated is discarded and drawn
     again (so no arch is scored twice: every score goes through one cache);
  3. the next population is NSGA-II's environmental selection over parents' population + children:
     non-dominated fronts first, then crowding distance (Deb et al. 2002).
The answer is the evaluated arch with the highest fitness (the paper retrains only that one).
We write NSGA-II's sorting ourselves (the paper's parent rule and its retry-until-new children do
not map onto pymoo's GA loop); tests check it against pymoo's implementation and known fronts.

Random search evaluates the same number of distinct archs, drawn uniformly within the limit.
Fitness sources: `supernet` (a trained checkpoint, each arch scored with its own code pi(a) on the
rank protocol's scoring images) and `oracle` (the embedded NB201 ground truth: checks the search
apart from the supernet).

Nothing is lost on interruption: every score is appended to `OUT/scores.partial.csv` as it is made;
the same command run again replays the saved scores (the search is seeded, so it takes the same
path) and scores only the rest. The file goes once `history.csv` and `result.json` are written.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.registry import Registry

Arch = Tuple[int, ...]


# ----------------------------------------------------------------------------- NSGA-II sorting
def non_dominated_fronts(objectives: np.ndarray) -> List[List[int]]:
    """Fronts of row indices, best first, for objectives to MINIMISE (rows = points)."""
    f = np.asarray(objectives, dtype=np.float64)
    n = len(f)
    le = (f[:, None, :] <= f[None, :, :]).all(-1)
    lt = (f[:, None, :] < f[None, :, :]).any(-1)
    dominates = le & lt                      # dominates[i, j]: i dominates j
    counts = dominates.sum(0)                # how many dominate j
    fronts, current = [], [i for i in range(n) if counts[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in np.flatnonzero(dominates[i]):
                counts[j] -= 1
                if counts[j] == 0:
                    nxt.append(int(j))
        current = sorted(nxt)
    return fronts


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
    """Crowding distance of the points of one front (boundary points get inf)."""
    f = np.asarray(objectives, dtype=np.float64)
    n, m = f.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(f[:, k], kind="stable")
        span = f[order[-1], k] - f[order[0], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (f[order[2:], k] - f[order[:-2], k]) / span
    return dist


def nsga2_select(objectives: np.ndarray, k: int) -> List[int]:
    """Indices of the k survivors: whole fronts first, the last front cut by crowding distance."""
    chosen: List[int] = []
    for front in non_dominated_fronts(objectives):
        if len(chosen) + len(front) <= k:
            chosen.extend(front)
            continue
        cd = crowding_distance(np.asarray(objectives)[front])
        order = np.argsort(-cd, kind="stable")
        chosen.extend(front[i] for i in order[: k - len(chosen)])
        break
    return chosen


# ----------------------------------------------------------------------------- evaluation cache
@dataclass
class Record:
    arch: Arch
    fitness: float
    flops: float      # MFLOPs
    generation: int
    code: List[float] = field(default_factory=list)


class Evaluator:
    """Scores each arch once; `records` keeps them in evaluation order.

    With a `journal` file every score is appended (and flushed) as it is made; a new Evaluator on
    the same journal replays those scores instead of recomputing them, so an interrupted search run
    again with the same command takes the same path and only scores what it had not reached.
    `key` names what the scores depend on (fitness source, checkpoint, scoring images); a journal
    written under another key is refused.

    Under torchrun (`dist`) the archs a generation has not scored yet are split across the processes
    (each journals its share into `<journal>.rR`), and every process gets every score (all_gather), so
    all of them take the same search path; any journal found is replayed, whatever process count wrote it.
    """

    def __init__(self, fitness: Callable[[Sequence[Arch]], List[Tuple[float, List[float]]]],
                 flops: Callable[[Arch], float], journal: Optional[Path] = None, key: str = "",
                 arch_str: Callable[[Arch], str] = str, dist=None):
        from kshot_bench.distributed import Dist

        self._fitness, self.flops, self._str = fitness, flops, arch_str
        self.dist = dist or Dist()
        self.cache: Dict[Arch, Record] = {}
        self.records: List[Record] = []
        self.calls = 0      # fitness evaluations made by this Evaluator (this process)
        self.replayed = 0   # scores taken from the journal so far
        self._saved: Dict[str, Tuple[float, List[float]]] = {}
        self._journal = self._base = None
        if journal is not None:
            journal = self._base = Path(journal)
            self._saved = self._read_journals(journal, key)
            self.dist.barrier()  # every process has read the same journals before any of them adds to its own
            self._journal = journal.with_name(journal.name + f".r{self.dist.rank}") if self.dist.active else journal
            if not self._journal.exists():
                with open(self._journal, "w", newline="") as fh:
                    csv.writer(fh).writerow(["#key", key])

    @property
    def saved(self) -> int:
        """Scores waiting in the journal from an interrupted run."""
        return len(self._saved)

    @staticmethod
    def journals(journal: Path) -> List[Path]:
        """The journal and its per-process siblings."""
        return sorted(p for p in journal.parent.glob(journal.name + "*") if p.is_file())

    def _read_journals(self, journal: Path, key: str) -> Dict[str, Tuple[float, List[float]]]:
        saved = {}
        for path in self.journals(journal):
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            if not rows or rows[0][:2] != ["#key", key]:
                raise UserError(f"{path} holds partial scores of a different search "
                                f"({rows[0][1] if rows and len(rows[0]) > 1 else 'unreadable'}; this one: {key})",
                                fix="use a new --out directory, or delete that file to start over")
            for row in rows[1:]:
                if len(row) >= 2:  # a row cut short by the interruption is scored again
                    try:
                        saved[row[0]] = (float(row[1]), [float(v) for v in row[2:]])
                    except ValueError:
                        continue
        return saved

    def _score(self, archs: Sequence[Arch]) -> Dict[str, Tuple[float, List[float]]]:
        """Score `archs` (this process's share of them under torchrun), journaling each; every score, by name."""
        mine = self.dist.share(list(archs))
        scores = {}
        fh = open(self._journal, "a", newline="") if self._journal is not None and mine else None
        try:
            for arch in mine:
                fit, code = self._fitness([arch])[0]
                self.calls += 1
                name = self._str(arch)
                scores[name] = (float(fit), [float(v) for v in code])
                if fh is not None:
                    csv.writer(fh).writerow([name, repr(float(fit))] + [repr(float(v)) for v in code])
                    fh.flush()
        finally:
            if fh is not None:
                fh.close()
        if self.dist.active:
            scores = {n: v for part in self.dist.all_gather(scores) for n, v in part.items()}
        return scores

    def evaluate(self, archs: Sequence[Arch], generation: int) -> List[Record]:
        new = [a for a in dict.fromkeys(archs) if a not in self.cache]
        scores = self._score([a for a in new if self._str(a) not in self._saved])
        for arch in new:
            name = self._str(arch)
            if name in self._saved:
                fit, code = self._saved[name]
                self.replayed += 1
            else:
                fit, code = scores[name]
            rec = Record(arch, float(fit), float(self.flops(arch)), generation, list(code))
            self.cache[arch] = rec
            self.records.append(rec)
        return [self.cache[a] for a in archs]

    def remove_journals(self) -> None:
        if self._base is not None:
            for path in self.journals(self._base):
                path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- algorithms
@dataclass(frozen=True)
class SearchConfig:
    population: int = 50
    generations: int = 20
    parents: int = 20
    mutation_prob: float = 1 / 6
    flops_limit: Optional[float] = None   # MFLOPs, hard
    max_tries: int = 200                  # draws per wanted child before giving up on a generation
    widths: bool = True                   # spaces with widths: search them too (False: every width 1.0)

    @property
    def budget(self) -> int:
        """Distinct archs the default NSGA-II run evaluates: the first population plus one per child."""
        return self.population * (self.generations + 1)


def _draw_feasible(space, rng, ok: Callable[[Arch], bool], tries: int, widths: bool = True) -> Arch:
    for _ in range(tries):
        arch = space.sample(rng, widths=widths)
        if ok(arch):
            return arch
    raise UserError("could not draw an arch within the FLOPs limit", fix="raise --flops-limit")


def nsga2(space, evaluator: Evaluator, cfg: SearchConfig, rng: np.random.Generator, progress=None) -> List[Record]:
    def feasible(a):
        return cfg.flops_limit is None or evaluator.flops(a) <= cfg.flops_limit

    def new_and_feasible(a):
        return a not in evaluator.cache and feasible(a)

    first: List[Arch] = []
    for _ in range(cfg.population):
        first.append(_draw_feasible(space, rng, lambda a: new_and_feasible(a) and a not in first,
                                    cfg.max_tries * cfg.population, cfg.widths))
    pop = evaluator.evaluate(first, 0)
    for gen in range(1, cfg.generations + 1):
        parents = sorted(pop, key=lambda r: -r.fitness)[: cfg.parents]
        children: List[Arch] = []
        for i in range(cfg.population):
            for _ in range(cfg.max_tries):
                if i < cfg.population // 2:
                    child = space.mutate(parents[int(rng.integers(len(parents)))].arch, rng, cfg.mutation_prob,
                                         widths=cfg.widths)
                else:
                    a, b = rng.choice(len(parents), size=2, replace=len(parents) < 2)
                    child = space.crossover(parents[int(a)].arch, parents[int(b)].arch, rng)
                if new_and_feasible(child) and child not in children:
                    children.append(child)
                    break
        kids = evaluator.evaluate(children, gen)
        union = pop + kids
        objectives = np.array([[-r.fitness, r.flops] for r in union])
        pop = [union[i] for i in nsga2_select(objectives, cfg.population)]
        if progress:
            progress(gen, len(evaluator.records))
    return evaluator.records


def random_search(space, evaluator: Evaluator, cfg: SearchConfig, rng: np.random.Generator, progress=None,
                  budget: Optional[int] = None) -> List[Record]:
    budget = budget or cfg.budget
    chosen: List[Arch] = []
    seen = set()
    for _ in range(budget):
        try:
            arch = _draw_feasible(space, rng, lambda a: a not in seen and (cfg.flops_limit is None or
                                                                          evaluator.flops(a) <= cfg.flops_limit),
                                  cfg.max_tries * 10, cfg.widths)
        except UserError:
            break  # fewer feasible archs than the budget: all of them are in
        seen.add(arch)
        chosen.append(arch)
    batch = max(1, cfg.population)
    for start in range(0, len(chosen), batch):
        evaluator.evaluate(chosen[start:start + batch], start // batch)
        if progress:
            progress(start // batch, len(evaluator.records))
    return evaluator.records


ALGOS: Registry[Callable] = Registry("search algorithm")
ALGOS.register("nsga2", nsga2)
ALGOS.register("random", random_search)


def pareto_front(records: Sequence[Record]) -> List[Record]:
    objectives = np.array([[-r.fitness, r.flops] for r in records])
    front = non_dominated_fronts(objectives)[0]
    return sorted((records[i] for i in front), key=lambda r: r.flops)


def best(records: Sequence[Record]) -> Record:
    """Highest fitness; ties go to the earlier evaluated arch."""
    return max(records, key=lambda r: r.fitness)


# ----------------------------------------------------------------------------- fitness sources
def oracle_fitness(space, dataset: str, truth_name: Optional[str] = None):
    """Fitness = the ground truth itself (the best any supernet could do): for spaces with a truth table."""
    from kshot_bench.ground_truth import space_truth

    truth = space_truth(space, truth_name or space.TRUTH[dataset])

    def fitness(archs):
        return [(float(truth[space.key_of(a)]), []) for a in archs]

    return fitness


def supernet_fitness(model, codes, batches, bf16: bool = False):
    import torch

    from kshot_bench.scoring import score_each

    def fitness(archs):
        model.eval()
        with torch.no_grad():
            lam = codes(list(archs))
        return [(acc, lam[i].tolist()) for i, (acc, _) in enumerate(score_each(model, archs, lam, batches, bf16))]

    return fitness


# ----------------------------------------------------------------------------- outputs
def _write_records(path: Path, records: Sequence[Record], space, truth: Optional[np.ndarray]) -> None:
    """One row per scored arch; the space's key (the NB201 index) and `truth` where the space has a ground truth."""
    k = max((len(r.code) for r in records), default=0)
    tmp = Path(str(path) + ".tmp")
    lams = [f"lam_{i}" for i in range(k)]
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        if truth is not None:
            w.writerow(["order", "generation", space.KEY, "arch_str", "fitness", "flops_M", "truth"] + lams)
        else:
            w.writerow(["order", "generation", "arch_str", "fitness", "flops_M", "params_M"] + lams)
        for n, r in enumerate(records):
            lam = [f"{v:.6g}" for v in r.code] if r.code else [""] * k
            if truth is not None:
                idx = space.key_of(r.arch)
                w.writerow([n, r.generation, idx, space.to_str(r.arch), f"{r.fitness:.6g}", f"{r.flops:.4f}",
                            f"{truth[idx]:.10g}"] + lam)
            else:
                params = space.cost(r.arch, *space.COST_CONVENTION)[0]
                w.writerow([n, r.generation, space.to_str(r.arch), f"{r.fitness:.6g}", f"{r.flops:.4f}",
                            f"{params / 1e6:.4f}"] + lam)
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    from kshot_bench.results import write_json

    write_json(path, data)


JOURNAL = "scores.partial.csv"


def run_search(space_name: str, dataset: str, algo: str, fitness_kind: str, seed: int, out: Path,
               cfg: SearchConfig, fitness=None, protocol: Optional[Dict] = None, truth_name: Optional[str] = None,
               progress: bool = True, dist=None) -> Dict:
    """One search run: history.csv (every scored arch), pareto.csv, result.json."""
    from tqdm import tqdm

    from kshot_bench.datasets import DATASETS
    from kshot_bench.ground_truth import has_truth, space_truth
    from kshot_bench.search_space import SPACES

    space = SPACES.get(space_name)
    info = DATASETS.get(dataset)
    search = ALGOS.get(algo)
    benchmark = has_truth(space, dataset)  # a ground truth for every arch of the space
    truth_name = (truth_name or space.TRUTH[dataset]) if benchmark else None
    truth = space_truth(space, truth_name) if benchmark else None
    flops, smallest = _flops_source(space, info)
    if cfg.flops_limit is not None and smallest > cfg.flops_limit:
        raise UserError(f"no {space_name} arch meets a FLOPs limit of {cfg.flops_limit:g} M "
                        f"(the smallest needs {smallest:.2f} M)", fix="raise --flops-limit")
    if fitness is None:
        if fitness_kind != "oracle" or not benchmark:
            raise UserError(f"fitness {fitness_kind!r} on {space_name} needs a trained supernet",
                            fix="pass --fitness supernet --checkpoint supernet.pt" + ("" if benchmark else
                                f" (the oracle needs a ground truth, which the {space_name} space does not have)"))
        fitness = oracle_fitness(space, dataset, truth_name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key_fields = {f: (protocol or {}).get(f) for f in ("checkpoint", "config_hash", "score_set")}
    key = json.dumps({"fitness": fitness_kind, "dataset": dataset, "truth": truth_name, "space": space_name,
                      "flops_limit": cfg.flops_limit, **key_fields}, sort_keys=True)
    from kshot_bench.distributed import Dist

    dist = dist or Dist()
    evaluator = Evaluator(fitness, flops, out / JOURNAL, key, space.to_str, dist)
    progress = progress and dist.is_main
    if evaluator.saved and progress:
        print(f"resuming: {evaluator.saved} scores saved in {out / JOURNAL} are reused")
    bar = tqdm(total=cfg.budget, desc=f"{algo} seed {seed}", unit="arch", disable=not progress, mininterval=1.0)

    def report(_, n):
        bar.update(n - bar.n)

    t0 = time.perf_counter()
    records = search(space, evaluator, cfg, np.random.default_rng([seed, 5]), report)
    bar.close()
    wall = time.perf_counter() - t0
    chosen = best(records)
    if not dist.is_main:  # every process took the same path; the main one writes it
        dist.barrier()
        return {}
    _write_records(out / "history.csv", records, space, truth)
    _write_records(out / "pareto.csv", pareto_front(records), space, truth)
    params = space.cost(chosen.arch, *(space.COST_CONVENTION or (info.num_classes, info.input_size)))[0]
    result = {
        "algo": algo, "fitness": fitness_kind, "seed": seed, "space": space_name, "dataset": dataset,
        "flops_limit_M": cfg.flops_limit, "population": cfg.population, "generations": cfg.generations,
        "parents": cfg.parents, "n_evaluated": len(records), "evaluations": evaluator.calls,
        "arch_str": space.to_str(chosen.arch), "fitness_value": chosen.fitness, "flops_M": chosen.flops,
        "params_M": params / 1e6, "code": chosen.code,
        "wall_s": wall, "scores_reused_from_interrupted_run": evaluator.replayed, "protocol": protocol or {},
        "world_size": dist.world_size,
    }
    if benchmark:
        idx = space.key_of(chosen.arch)
        feasible = _ALL_FLOPS[(space.NAME, info.name)] <= (cfg.flops_limit if cfg.flops_limit is not None else np.inf)
        opt_index = int(np.flatnonzero(feasible)[np.argmax(truth[feasible])])
        result.update({
            "index": idx, "truth_column": truth_name, "truth": float(truth[idx]),
            "optimum": {"index": opt_index, "arch_str": space.to_str(space.from_key(opt_index)),
                        "truth": float(truth[opt_index]), "flops_M": float(_ALL_FLOPS[(space.NAME, info.name)][opt_index])},
            "regret": float(truth[opt_index] - truth[idx]),
        })
    else:
        result.update({"truth": None, "flops_convention": "{1}x{1} input, {0} classes (SPEC 7)".format(*space.COST_CONVENTION),
                       "widths_searched": cfg.widths})
    _write_json(out / "result.json", result)
    evaluator.remove_journals()  # everything is in history.csv now
    dist.barrier()
    return result


_ALL_FLOPS: Dict = {}


def _flops_source(space, info) -> Tuple[Callable[[Arch], float], float]:
    """(arch -> MFLOPs, the smallest MFLOPs of the space). Spaces that list their archs (NUM_ARCHS): every arch's
    FLOPs at the dataset's size, computed once and looked up by key; spaces too large to list: their cost
    convention, memoised per arch, and the smallest arch (every layer `id`, narrowest widths) from the space's
    own cost."""
    if space.NUM_ARCHS is not None:
        key = (space.NAME, info.name)
        if key not in _ALL_FLOPS:
            _, archs, _ = space.arch_set("all", 0)
            _ALL_FLOPS[key] = np.array([space.cost(a, info.num_classes, info.input_size)[1] / 1e6 for a in archs])
        table = _ALL_FLOPS[key]
        return (lambda arch: float(table[space.key_of(arch)])), float(table.min())
    import functools

    @functools.lru_cache(maxsize=None)
    def flops(arch) -> float:
        return space.cost(arch, *space.COST_CONVENTION)[1] / 1e6

    return flops, flops(space.smallest())


def aggregate_seeds(results: List[Dict], out: Path) -> Dict:
    """Table 3 shape: chosen arch's ground truth, mean +- std over seeds, beside the optimum."""
    vals = np.array([r["truth"] for r in results])
    summary = {
        "algo": results[0]["algo"], "fitness": results[0]["fitness"], "dataset": results[0]["dataset"],
        "flops_limit_M": results[0]["flops_limit_M"], "seeds": [r["seed"] for r in results],
        "truth_column": results[0]["truth_column"],
        "truth_mean": float(vals.mean()), "truth_std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
        "truth_values": vals.tolist(), "optimum": results[0]["optimum"]["truth"],
        "n_evaluated_mean": float(np.mean([r["n_evaluated"] for r in results])),
        "chosen": [r["arch_str"] for r in results],
    }
    _write_json(Path(out) / "summary.json", summary)
    return summary
