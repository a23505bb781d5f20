import json

import numpy as np
import pytest

from kshot_bench import search
from kshot_bench.errors import UserError


def test_fronts_on_a_known_set():
    # minimise both: (1,4) (2,2) (4,1) form front 0; (3,3) (4,4)... below them
    pts = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [4, 4], [5, 5], [2, 5]])
    assert search.non_dominated_fronts(pts) == [[0, 1, 2], [3, 6], [4], [5]]


def test_crowding_distance_known_values():
    pts = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    cd = search.crowding_distance(pts)
    assert np.isinf(cd[0]) and np.isinf(cd[3])
    assert cd[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)
    assert cd[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)


@pytest.mark.parametrize("seed", range(4))
def test_sorting_agrees_with_pymoo(seed):
    pymoo_nds = pytest.importorskip("pymoo.util.nds.non_dominated_sorting")
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 8, size=(60, 2)).astype(float)  # many ties and duplicates
    ours = [sorted(f) for f in search.non_dominated_fronts(pts)]
    theirs = [sorted(f.tolist()) for f in pymoo_nds.NonDominatedSorting().do(pts)]
    assert ours == theirs
    x = np.sort(rng.random(12))
    front = np.stack([x, 1 - x ** 2], axis=1)  # 12 mutually non-dominated points
    assert search.non_dominated_fronts(front) == [list(range(12))]
    # Deb et al. sum the normalised gaps over objectives; pymoo averages them: a factor of m = 2
    np.testing.assert_allclose(search.crowding_distance(front), 2 * calc_crowding_distance(front))


def test_oracle_search_respects_the_flops_limit_and_is_deterministic(tmp_path):
    cfg = search.SearchConfig(population=20, generations=5, parents=8, flops_limit=60.0)
    a = search.run_search("nb201", "cifar10", "nsga2", "oracle", 3, tmp_path / "a", cfg, progress=False)
    b = search.run_search("nb201", "cifar10", "nsga2", "oracle", 3, tmp_path / "b", cfg, progress=False)
    assert (tmp_path / "a" / "history.csv").read_text() == (tmp_path / "b" / "history.csv").read_text()
    assert a["arch_str"] == b["arch_str"]
    import csv
    rows = list(csv.DictReader(open(tmp_path / "a" / "history.csv")))
    assert all(float(r["flops_M"]) <= 60.0 for r in rows)
    assert a["flops_M"] <= 60.0 and a["optimum"]["flops_M"] <= 60.0
    assert len({r["index"] for r in rows}) == len(rows)  # the cache: no arch scored twice
    search.run_search("nb201", "cifar10", "nsga2", "oracle", 4, tmp_path / "c", cfg, progress=False)
    assert (tmp_path / "c" / "history.csv").read_text() != (tmp_path / "a" / "history.csv").read_text()
    pareto = list(csv.DictReader(open(tmp_path / "a" / "pareto.csv")))
    flops = [float(r["flops_M"]) for r in pareto]
    fits = [float(r["fitness"]) for r in pareto]
    assert flops == sorted(flops) and fits == sorted(fits)  # a front: more FLOPs buys more accuracy
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["truth"] == pytest.approx(result["fitness_value"])  # oracle fitness is the ground truth


def test_cache_scores_each_arch_once():
    calls = []

    def fitness(archs):
        calls.extend(archs)
        return [(float(sum(a)), []) for a in archs]

    ev = search.Evaluator(fitness, lambda a: 1.0)
    archs = [(0, 1, 2, 3, 4, 0), (1, 1, 1, 1, 1, 1)]
    ev.evaluate(archs + archs[:1], 0)
    ev.evaluate(archs, 1)
    assert calls == archs and ev.calls == 2 and len(ev.records) == 2


def test_interrupted_search_resumes_on_the_same_path(tmp_path):
    from kshot_bench.errors import UserError

    cfg = search.SearchConfig(population=10, generations=4)
    from kshot_bench.search_space import SPACES

    oracle = search.oracle_fitness(SPACES.get("nb201"), "cifar10")
    calls = []

    def fitness(archs, stop_after=None):
        if stop_after is not None and len(calls) >= stop_after:
            raise KeyboardInterrupt
        calls.extend(archs)
        return oracle(archs)

    whole = search.run_search("nb201", "cifar10", "nsga2", "oracle", 3, tmp_path / "whole", cfg, fitness, progress=False)
    n = len(calls)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        search.run_search("nb201", "cifar10", "nsga2", "oracle", 3, tmp_path / "cut", cfg,
                          lambda a: fitness(a, stop_after=23), progress=False)
    assert not (tmp_path / "cut" / "result.json").exists() and (tmp_path / "cut" / search.JOURNAL).exists()
    calls.clear()
    again = search.run_search("nb201", "cifar10", "nsga2", "oracle", 3, tmp_path / "cut", cfg, fitness, progress=False)
    assert len(calls) == n - 23 and again["scores_reused_from_interrupted_run"] == 23
    assert (tmp_path / "cut" / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()
    assert again["arch_str"] == whole["arch_str"] and not (tmp_path / "cut" / search.JOURNAL).exists()
    # partial scores of another search are refused
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        search.run_search("nb201", "cifar10", "nsga2", "oracle", 3, tmp_path / "other", cfg,
                          lambda a: fitness(a, stop_after=2), progress=False)
    with pytest.raises(UserError, match="partial scores of a different search"):
        search.run_search("nb201", "cifar10", "nsga2", "oracle", 3, tmp_path / "other", cfg, fitness,
                          protocol={"checkpoint": "b.pt"}, progress=False)


def test_random_search_uses_the_budget(tmp_path):
    cfg = search.SearchConfig(population=10, generations=3)
    r = search.run_search("nb201", "cifar10", "random", "oracle", 0, tmp_path, cfg, progress=False)
    assert r["n_evaluated"] == cfg.budget == 40


def test_impossible_flops_limit_and_bad_choices(tmp_path):
    with pytest.raises(UserError, match="no nb201 arch meets a FLOPs limit of 1 M"):
        search.run_search("nb201", "cifar10", "nsga2", "oracle", 0, tmp_path, search.SearchConfig(flops_limit=1.0),
                          progress=False)
    with pytest.raises(UserError, match="unknown search algorithm"):
        search.run_search("nb201", "cifar10", "evolution", "oracle", 0, tmp_path, search.SearchConfig(), progress=False)
    with pytest.raises(UserError, match="unknown search space"):
        search.run_search("darts", "cifar10", "nsga2", "oracle", 0, tmp_path, search.SearchConfig(), progress=False)
