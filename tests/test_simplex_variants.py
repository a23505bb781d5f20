"""Simplex-net training variants (issue 45): the joint step, Dirichlet warm-up codes, the output layer's initial
scale, the named variants, and scoring with a fixed code."""
import json

import numpy as np
import pytest
import torch

from kshot_bench.cli import main
from kshot_bench.config import from_preset, override
from kshot_bench.data import load_dataset
from kshot_bench.errors import UserError
from kshot_bench.models import build_code_source
from kshot_bench.simplex import CPU_VARIANT, SIMPLEX_VARIANTS, scoring_codes, variant_of
from kshot_bench.train import Trainer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def splits(tiny_cifar_folder):
    return load_dataset("cifar10", tiny_cifar_folder, download=False)


def smoke(**changes):
    base = dict(k=3, epochs=2, warmup_epochs=1, batch_size=16, simplex_paths=4, simplex_interval=1, checkpoint_every=4)
    base.update(changes)
    return from_preset("smoke", **base)


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def test_joint_step_moves_copies_and_simplex_net_on_one_forward(splits, tmp_path, monkeypatch):
    t = Trainer(smoke(simplex_step="joint", warmup_epochs=0), tmp_path, splits, CPU, progress=False)
    x, y = next(iter(t.loader.epoch(0)))
    calls = {"forward": 0, "groups": 0}
    forward, groups = t.model.forward, t.model.forward_groups
    monkeypatch.setattr(t.model, "forward", lambda *a, **k: (calls.__setitem__("forward", calls["forward"] + 1), forward(*a, **k))[1])
    monkeypatch.setattr(t.model, "forward_groups", lambda *a, **k: (calls.__setitem__("groups", calls["groups"] + 1), groups(*a, **k))[1])
    w0, c0 = snapshot(t.model), snapshot(t.codes)
    t.iteration(x, y, 0)
    assert calls == {"forward": 1, "groups": 0}  # one forward, no separate m-path step
    assert any(not torch.equal(a, b) for a, b in zip(w0, snapshot(t.model)))
    # the output layer moved (the hidden layer gets no gradient through an output layer that starts at zero)
    assert not torch.equal(c0[-1], snapshot(t.codes)[-1]) and not torch.equal(c0[-2], snapshot(t.codes)[-2])
    assert t.meters["simplex_steps"] == 1 and t.meters["simplex_loss"] > 0
    # the separate step at the same place runs the m-path step as well
    s = Trainer(smoke(warmup_epochs=0, simplex_threads=0), tmp_path / "s", splits, CPU, progress=False)
    calls.update(forward=0, groups=0)
    forward, groups = s.model.forward, s.model.forward_groups
    monkeypatch.setattr(s.model, "forward", lambda *a, **k: (calls.__setitem__("forward", calls["forward"] + 1), forward(*a, **k))[1])
    monkeypatch.setattr(s.model, "forward_groups", lambda *a, **k: (calls.__setitem__("groups", calls["groups"] + 1), groups(*a, **k))[1])
    s.iteration(x, y, 0)
    assert calls == {"forward": 1, "groups": 1}


def test_joint_step_respects_the_interval_and_warm_up(splits, tmp_path):
    t = Trainer(smoke(simplex_step="joint", simplex_interval=2), tmp_path, splits, CPU, progress=False)
    data = list(t.loader.epoch(0)) + list(t.loader.epoch(1))
    steps = []
    for step, (x, y) in enumerate(data):
        before = snapshot(t.codes)
        t.iteration(x, y, step)
        steps.append(any(not torch.equal(a, b) for a, b in zip(before, snapshot(t.codes))))
    w = t.warmup_steps
    assert steps == [False] * w + [(s - w) % 2 == 0 for s in range(w, len(data))]


def test_dirichlet_warm_up_codes_lie_on_the_simplex_and_reach_the_supernet(splits, tmp_path, monkeypatch):
    t = Trainer(smoke(warmup_code="dirichlet", warmup_epochs=2), tmp_path, splits, CPU, progress=False)
    codes = torch.stack([t.warmup_code(s) for s in range(200)])
    assert (codes >= 0).all() and torch.allclose(codes.sum(1), torch.ones(200))
    assert torch.equal(t.warmup_code(7), t.warmup_code(7))  # seeded by the step
    assert len({tuple(c.tolist()) for c in codes}) == 200
    # Dirichlet(1) on K=3: each weight's mean 1/3, variance (1/3)(2/3)/4 = 1/18
    assert codes.mean(0).sub(1 / 3).abs().max() < 0.06
    assert abs(float(codes[:, 0].var()) - 1 / 18) < 0.02
    seen = []
    forward = t.model.forward
    monkeypatch.setattr(t.model, "forward", lambda x, arch, code: (seen.append(code.clone()), forward(x, arch, code))[1])
    x, y = next(iter(t.loader.epoch(0)))
    t.iteration(x, y, 3)
    assert torch.equal(seen[0], t.warmup_code(3))
    uniform = Trainer(smoke(), tmp_path / "u", splits, CPU, progress=False)
    assert torch.equal(uniform.warmup_code(3), torch.full((3,), 1 / 3))


def test_output_layer_scale_spreads_the_first_codes():
    archs = [(3, 3, 3, 3, 3, 3), (1, 1, 1, 1, 1, 1), (2, 4, 2, 4, 2, 4)]
    torch.manual_seed(0)
    zero = build_code_source(smoke())(archs)
    spread = build_code_source(smoke(simplex_init=0.5))(archs)
    assert torch.allclose(zero, torch.full_like(zero, 1 / 3))
    assert not torch.allclose(spread, torch.full_like(spread, 1 / 3), atol=1e-3)
    with pytest.raises(UserError, match="simplex_init"):
        smoke(simplex_init=-1.0)


def test_named_variants_are_valid_configs_and_found_again():
    for name in SIMPLEX_VARIANTS.names():
        cfg = smoke().replace(**SIMPLEX_VARIANTS.get(name))
        assert variant_of(cfg) == name
    assert variant_of(smoke(simplex_paths=8)) == ""
    with pytest.raises(UserError, match="simplex_step"):
        smoke(simplex_step="both")
    with pytest.raises(UserError, match="warm-up code"):
        smoke(warmup_code="gauss")


def test_cpu_presets_train_the_chosen_variant_and_every_named_variant_overrides_it():
    """Issue 45: the CPU presets carry CPU_VARIANT's fields (`kshot_copies` included), and `--variant X` on them gives
    exactly X, so `--variant cpu` is still the old default; the paper-scale preset keeps the paper's step."""
    assert CPU_VARIANT == "joint-shared"
    for space, preset in (("nb201", "narrow"), ("nb201", "cpu"), ("nb201", "long"), ("nb201", "demo"), ("macro", "cpu")):
        cfg = from_preset(preset, space=space)
        assert variant_of(cfg) == CPU_VARIANT, (space, preset)
        for name in SIMPLEX_VARIANTS.names():
            assert variant_of(override(cfg, SIMPLEX_VARIANTS.get(name))) == name, (space, preset, name)
    assert override(from_preset("narrow"), SIMPLEX_VARIANTS.get("cpu")).kshot_copies == "all"
    assert variant_of(from_preset("nb201")) == "paper"


def test_scoring_codes():
    codes = build_code_source(smoke(simplex_init=0.5))
    archs = [(3, 3, 3, 3, 3, 3), (1, 1, 1, 1, 1, 1), (2, 4, 2, 4, 2, 4)]
    own = codes(archs)
    assert scoring_codes(codes, archs, "own") is codes
    mean = scoring_codes(codes, archs, "mean")(archs[:2])
    assert torch.allclose(mean, own.mean(0).expand(2, -1))
    assert torch.equal(scoring_codes(codes, archs, "uniform")(archs), torch.full((3, 3), 1 / 3))


def test_fixed_code_scoring_gives_the_one_shot_scores_when_k_is_1(tmp_path, tiny_cifar_folder):
    train = tmp_path / "train"
    assert main(["train", "--preset", "smoke", "--k", "1", "--quiet", "--data-root", str(tiny_cifar_folder),
                 "--out", str(train)]) == 0
    preds = {}
    for mode in ("own", "uniform", "mean"):
        out = tmp_path / mode
        assert main(["rank", "--checkpoint", str(train / "supernet.pt"), "--quiet", "--data-root",
                     str(tiny_cifar_folder), "--score-code", mode, "--out", str(out)]) == 0
        preds[mode] = (out / "predictions.csv").read_text()
        assert json.loads((out / "metrics.json").read_text())["protocol"]["score_code"] == mode
    assert preds["own"] == preds["uniform"] == preds["mean"]


def test_fixed_code_scoring_of_a_k_shot_supernet_differs(tmp_path, tiny_cifar_folder):
    train = tmp_path / "train"
    assert main(["train", "--preset", "smoke", "--k", "2", "--set", "simplex_init=1.0", "--quiet", "--data-root",
                 str(tiny_cifar_folder), "--out", str(train)]) == 0
    scores = {}
    for mode in ("own", "uniform"):
        out = tmp_path / mode
        assert main(["rank", "--checkpoint", str(train / "supernet.pt"), "--quiet", "--data-root",
                     str(tiny_cifar_folder), "--score-code", mode, "--out", str(out)]) == 0
        lines = (out / "predictions.csv").read_text().splitlines()
        header = lines[0].split(",")
        scores[mode] = [[float(v) for v in line.split(",")[header.index("lam_0"):]] for line in lines[1:]]
    assert all(row == [0.5, 0.5] for row in scores["uniform"])
    assert any(row != [0.5, 0.5] for row in scores["own"])
    # the fixed code is named wherever the run is: its summary, its report row (never pooled with `own` as a
    # seed), and `compare`, which says the two differ in scoring, not in training
    from kshot_bench.report_runs import load_rank_run
    from kshot_bench.compare_runs import compare

    assert "# Ranking: cifar10, K=2, simplex-net codes, scored with 1/K codes" in (tmp_path / "uniform" / "summary.md").read_text()
    own, uniform = (load_rank_run(tmp_path / mode) for mode in ("own", "uniform"))
    assert uniform.name == own.name + ", scored with 1/K codes"
    lines = compare(tmp_path / "own", tmp_path / "uniform")
    assert "scoring differs in: score_code 'own' vs 'uniform' (A vs B)" in lines
    assert not any(x.startswith("scoring differs") for x in compare(tmp_path / "own", tmp_path / "own"))


def test_variant_flag(tmp_path, tiny_cifar_folder, capsys):
    out = tmp_path / "t"
    assert main(["train", "--preset", "smoke", "--k", "2", "--variant", "joint", "--quiet", "--data-root",
                 str(tiny_cifar_folder), "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["simplex_step"] == "joint" and cfg["simplex_interval"] == 1
    assert main(["train", "--preset", "smoke", "--variant", "nope", "--out", str(tmp_path / "n")]) != 0
    assert "simplex-net variant" in capsys.readouterr().err
    assert main(["rank", "--checkpoint", str(out / "supernet.pt"), "--variant", "joint", "--out",
                 str(tmp_path / "r")]) != 0
    assert "--variant" in capsys.readouterr().err


def test_joint_step_with_widths_adds_the_channel_regulariser(splits, tmp_path):
    """MobileNetV2 with width search: the joint step's simplex-net loss includes r_c, as the separate step's does."""
    cfg = from_preset("smoke", space="mbv2", k=2, simplex_step="joint", simplex_interval=1, warmup_epochs=0)
    t = Trainer(cfg, tmp_path, splits, CPU, progress=False)
    x, y = next(iter(t.loader.epoch(0)))
    t.iteration(x, y, 0)
    assert t.meters["simplex_steps"] == 1 and t.meters["rc"] > 0


def test_summary_names_the_variant_of_a_k_shot_run(tmp_path, tiny_cifar_folder):
    out = tmp_path / "r"
    assert main(["rank", "--preset", "smoke", "--k", "2", "--variant", "joint-shared", "--quiet", "--data-root",
                 str(tiny_cifar_folder), "--out", str(out)]) == 0
    assert "weights off the path: decay; simplex-net variant: joint-shared" in (out / "summary.md").read_text()


def test_scatter_title_names_the_variant_of_a_k_shot_run():
    from kshot_bench.results import scatter_title

    protocol = dict(space="macro", dataset="cifar10", k=4, code_label="simplex-net codes", simplex_variant="joint",
                    config_hash="58363ef9bd", n_archs=3969)
    metrics = dict(protocol=protocol, kendall_tau=0.5123, n_archs=3969)
    assert scatter_title(metrics).startswith("macro on cifar10, K=4 simplex-net codes (joint): Kendall tau 0.512\n3,969")
    one_shot = dict(metrics, protocol=dict(protocol, k=1, code_label="one-shot"))
    assert "(joint)" not in scatter_title(one_shot)  # a K=1 run has no simplex-net to name
