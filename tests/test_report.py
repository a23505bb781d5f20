"""The report builds from small synthetic run directories, and names missing inputs."""
import csv
import json

import numpy as np
import pytest

from kshot_bench.errors import UserError
from kshot_bench.report import build_report


def fake_rank_run(root, k, code, seed, epochs=10, tau=0.5, n=40, with_log=True, sampling=None, offpath=None):
    name = (f"k{k}-{'oneshot' if k == 1 else code}-e{epochs}-s{seed}" + (f"-{sampling}" if sampling else "")
            + (f"-{offpath}" if offpath else ""))
    d = root / name
    (d / "train").mkdir(parents=True)
    rng = np.random.default_rng(seed + 10 * k)
    truth = rng.uniform(60, 94, n)
    score = truth + rng.normal(0, 5, n)
    metrics = {
        "kendall_tau": tau + 0.01 * seed, "spearman": tau + 0.1, "split_tau": {"10": tau, "20": tau - 0.1},
        "top_tau": {"10": 0.1}, "precision_at_k": {"5": 0.4, "10": 0.5}, "regret": 1.0, "n_archs": n,
        "protocol": {"dataset": "cifar10", "k": k, "code": code, "config_hash": f"h{k}{code[:2]}{seed}{epochs}",
                     "seed": seed, "epochs": epochs, "arch_set": f"a seeded uniform sample of {n} archs",
                     "score_set": "64 images", "truth": "cifar10_test_200ep",
                     "machine": {"cpu": "x86_64", "device": "cpu", "threads": "2"}},
    }
    if sampling:
        metrics["protocol"]["sampling"] = sampling
        metrics["protocol"]["config_hash"] += sampling[:2]
    if offpath:
        metrics["protocol"]["offpath_update"] = offpath
        metrics["protocol"]["config_hash"] += offpath[:2]
    (d / "metrics.json").write_text(json.dumps(metrics))
    base = {"params": {"description": "parameter count (NB201)", "kendall_tau": 0.55, "spearman": 0.7,
                       "split_tau": {"10": 0.6, "20": 0.5}}}
    (d / "baselines.json").write_text(json.dumps(base))
    with open(d / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "arch_str", "score", "truth", "val_loss"] + [f"lam_{i}" for i in range(k)])
        for i in range(n):
            lam = rng.dirichlet(np.ones(k))
            w.writerow([i, "x", score[i], truth[i], 1.0] + list(lam))
    if with_log:
        with open(d / "train" / "log.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["epoch", "phase", "time_s", "images_per_s", "peak_mem_mb"])
            w.writeheader()
            for e in range(1, epochs + 1):
                w.writerow({"epoch": e, "phase": "warmup" if e <= 2 else "kshot", "time_s": 40 + k,
                            "images_per_s": 500 - k, "peak_mem_mb": 1000 + 10 * k})
    return d


@pytest.fixture()
def grid(tmp_path):
    root = tmp_path / "ablation"
    for seed in (0, 1):
        for epochs in (5, 10):
            fake_rank_run(root, 1, "uniform", seed, epochs, tau=0.4)
            for code in ("uniform", "random", "simplex"):
                fake_rank_run(root, 4, code, seed, epochs, tau=0.45)
        fake_rank_run(root, 2, "simplex", seed, 10, tau=0.47)
    s = tmp_path / "search" / "seed-0"
    s.mkdir(parents=True)
    (s / "result.json").write_text(json.dumps({
        "algo": "nsga2", "fitness": "oracle", "truth": 94.37, "seed": 0, "dataset": "cifar10", "flops_limit_M": None,
        "optimum": {"truth": 94.37}, "n_evaluated": 800}))
    return tmp_path


def test_report_builds_every_table_and_figure(grid, tmp_path):
    out = tmp_path / "report"
    path = build_report([grid / "ablation", grid / "search"], out)
    text = path.read_text()
    for heading in ("Table 4 shape", "Tables 5/6 shape", "Table 1 shape", "Table 3 shape"):
        assert heading in text
    for fig in ("fig4_tau_vs_k.png", "fig5_split_tau.png", "fig6_code_histogram.png", "fig7_tau_vs_k_epochs.png",
                "scatter_runs.png"):
        assert (out / fig).stat().st_size > 5000 and f"]({fig})" in text
    assert "Not drawn" not in text
    assert "h4si010" in text  # config hashes are named
    assert "Machines: x86_64, torch ?, 2 threads (cpu)." in text  # the fake runs name no processor or torch
    assert "| 94.37 ± 0.00 (n=1) | 100.0 | 94.37 |" in text  # the oracle optimum is above every other arch
    # budgets are kept apart: one-shot tau over 2 seeds (0.40, 0.41) at 10 and at 5 epochs
    assert "| one-shot (K=1) | 1 | 10 | 0.405 ± 0.007 (n=2) |" in text
    assert "| one-shot (K=1) | 1 | 5 | 0.405 ± 0.007 (n=2) |" in text
    assert "| baseline: parameter count (NB201) | – | – | 0.550 ± 0.000 (n=1) |" in text  # one arch set, counted once


def test_fig6_codes_come_from_the_runs_simplex_net(grid, tmp_path):
    import torch

    from kshot_bench.config import from_preset
    from kshot_bench.models import build_code_source

    cfg = from_preset("smoke", k=4, code="simplex", seed=1)
    codes = build_code_source(cfg)
    run = grid / "ablation" / "k4-simplex-e10-s1"
    torch.save({"config": cfg.to_dict(), "codes": codes.state_dict()}, run / "train" / "supernet.pt")
    text = build_report([grid / "ablation"], tmp_path / "report").read_text()
    assert "Fig. 6 from the simplex-net of run k4-simplex-e10-s1" in text
    assert "on a seeded uniform sample of 1,000 archs (seed 1)" in text


def test_missing_inputs_are_said(tmp_path):
    root = tmp_path / "one"
    fake_rank_run(root, 1, "uniform", 0, with_log=False)
    text = build_report([root], tmp_path / "r").read_text()
    assert "### Not drawn" in text
    assert "Fig. 4 needs runs at two or more values of K" in text
    assert "Fig. 6 needs a K-shot run with simplex-net codes" in text
    assert "Fig. 7 needs runs at two or more training budgets" in text
    assert "none of the runs has a training log" in text


def test_missing_run_field_is_a_clear_error(tmp_path):
    d = fake_rank_run(tmp_path / "runs", 4, "simplex", 0)
    m = json.loads((d / "metrics.json").read_text())
    del m["kendall_tau"]
    del m["protocol"]["config_hash"]
    (d / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="metrics.json lacks kendall_tau, protocol.config_hash") as err:
        build_report([tmp_path / "runs"], tmp_path / "r")
    assert "re-run" in err.value.fix
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no runs found"):
        build_report([tmp_path / "empty"], tmp_path / "r2")
    with pytest.raises(UserError, match="does not exist"):
        build_report([tmp_path / "nothing"], tmp_path / "r3")


def test_paired_comparison_of_runs_on_the_same_archs(tmp_path):
    """Two runs that scored the same archs are compared pair by pair; runs on other archs are not."""
    root = tmp_path / "runs"
    one = fake_rank_run(root, 1, "uniform", 0)
    kshot = fake_rank_run(root, 4, "simplex", 0)
    with open(one / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(5)
    for r in rows:  # losses that rank like the truth, with noise
        r["val_loss"] = 3.0 - float(r["truth"]) / 40 + rng.normal(0, 0.2)
    with open(one / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(kshot / "predictions.csv", "w", newline="") as fh:  # same archs, truth and losses, better scores
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["lam_1", "lam_2", "lam_3"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "score": float(r["truth"]) + rng.normal(0, 1), "lam_0": 0.25, "lam_1": 0.25,
                        "lam_2": 0.25, "lam_3": 0.25})
    text = build_report([root], tmp_path / "r").read_text()
    assert "### Paired comparisons" in text
    line = next(x for x in text.splitlines() if x.startswith("- At 10 epochs"))
    assert "ranks better than one-shot on these archs (one training seed)" in line
    # the K-shot run kept the one-shot run's losses: scored by loss the two are the same ranking
    loss = next(x for x in text.splitlines() if x.startswith("- Scored by validation loss instead"))
    assert "no difference" in loss and "seed 0: +0.000 [+0.000, +0.000], contains 0" in loss
    row = next(x for x in text.splitlines() if x.startswith("| cifar10 | K-shot + simplex-net | 4 | 10 |"))
    loss_taus = row.split(" | ")[8]
    assert " vs " in loss_taus and loss_taus.split(" vs ")[0] == loss_taus.split(" vs ")[1]
    assert "chance: 95% band of tau" in text and "random scores" not in text
    fake_rank_run(tmp_path / "other", 4, "uniform", 3)  # different archs: nothing to pair
    assert "Paired comparisons" not in build_report([tmp_path / "other", one], tmp_path / "r2").read_text()


def paired_seed_runs(root, seed, noise, epochs=10):
    """A one-shot and a K=4 run of one seed on the same archs and truth (the K=4 scores: truth + noise); returns
    (K=4 scores, one-shot scores, truth)."""
    one = fake_rank_run(root, 1, "uniform", seed, epochs=epochs)
    kshot = fake_rank_run(root, 4, "simplex", seed, epochs=epochs)
    with open(one / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    with open(kshot / "predictions.csv", "w", newline="") as fh:  # the one-shot run's archs and truth
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["lam_1", "lam_2", "lam_3"])
        w.writeheader()
        better = [float(r["truth"]) + rng.normal(0, noise) for r in rows]
        for r, score in zip(rows, better):
            w.writerow({**r, "score": score, "lam_0": 0.25, "lam_1": 0.25, "lam_2": 0.25, "lam_3": 0.25})
    return np.array(better), np.array([float(r["score"]) for r in rows]), np.array([float(r["truth"]) for r in rows])


def test_paired_comparisons_over_two_training_seeds(tmp_path):
    """With a K-shot and a one-shot run per seed on the same archs, the report adds the mean difference over
    the seeds with an interval that resamples the seeds, beside each seed's own."""
    from kshot_bench import metrics as stats

    root = tmp_path / "runs"
    pairs = [paired_seed_runs(root, seed, noise) for seed, noise in ((0, 1.0), (1, 3.0))]
    text = build_report([root], tmp_path / "r").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Across the 2 training seeds"))
    want = stats.seeds_tau_diff(pairs)
    assert f"mean Δtau {want['diff']:+.3f} [{want['ci_lo']:+.3f}, {want['ci_hi']:+.3f}]" in line
    assert want["diff"] == pytest.approx(np.mean([stats.paired_tau_diff(*p)["diff"] for p in pairs]))
    assert "lower bound on the uncertainty over training seeds" in line
    assert "Across the" not in build_report([root / "k1-oneshot-e10-s0", root / "k4-simplex-e10-s0"],
                                            tmp_path / "r2").read_text()


def test_seeds_pair_at_an_earlier_snapshot_while_one_seed_runs_on(tmp_path):
    """Seed 0 has reached 10 epochs, seed 1 only 5: the across-seed difference is given at 5 epochs, where both
    seeds pair, and the 10-epoch verdict stays a one-seed one."""
    from kshot_bench import metrics as stats

    root = tmp_path / "runs"
    paired_seed_runs(root, 0, 1.0, epochs=10)
    pairs = [paired_seed_runs(root, seed, noise, epochs=5) for seed, noise in ((0, 1.0), (1, 3.0))]
    lines = build_report([root], tmp_path / "r").read_text().splitlines()
    line = next(x for x in lines if x.startswith("- At 5 epochs, K-shot + simplex-net (K=4): Across the 2 training seeds"))
    want = stats.seeds_tau_diff(pairs)
    assert f"mean Δtau {want['diff']:+.3f} [{want['ci_lo']:+.3f}, {want['ci_hi']:+.3f}]" in line
    assert next(x for x in lines if x.startswith("- At 10 epochs")).count("seed ") == 1
    assert not any(x.startswith("- Across the") for x in lines)


def test_compare_two_runs_of_other_budgets_on_the_same_archs(tmp_path, capsys):
    """`kshot-bench compare`: any two runs on the same archs, images and truth (here 5 against 10 epochs),
    with a run against itself exactly 0; runs of another protocol and folders that are no rank runs are refused."""
    from kshot_bench.cli import main
    from kshot_bench.config import from_preset
    from kshot_bench.compare_runs import compare
    from kshot_bench.rundir import write_config

    root = tmp_path / "runs"
    b = fake_rank_run(root, 1, "uniform", 0, epochs=10)
    a = fake_rank_run(root, 4, "simplex", 0, epochs=5)
    with open(b / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(5)
    for which, path, noise in (("b", b, 8.0), ("a", a, 1.0)):  # a ranks like the truth, b barely
        with open(path / "predictions.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({**r, "score": float(r["truth"]) + rng.normal(0, noise),
                            "val_loss": 3.0 - float(r["truth"]) / 40 + rng.normal(0, 0.2)})
    lines = compare(a, b)
    acc = next(x for x in lines if x.startswith("| acc |")).split(" | ")
    lo, hi = (float(v) for v in acc[3].split("[")[1].rstrip("]").split(", "))
    assert float(acc[3].split(" ")[0]) > 0 and lo > 0 and acc[4] == "100% |"
    assert any(x.startswith("| loss |") and "n/a" not in x for x in lines)
    assert "5 epochs" in lines[0] and "10 epochs" in lines[1]
    assert not any(x.startswith("training configs differ") for x in lines)  # no config.json: nothing to say
    # with their configs, the training fields that differ are named (scoring fields are the compared protocol's)
    write_config(from_preset("smoke", k=4, score_images=64), a)
    write_config(from_preset("smoke", k=1, grad_clip=5.0, score_images=32), b)
    assert "training configs differ in: k 4 vs 1; grad_clip 0.0 vs 5.0 (A vs B)" in compare(a, b)
    # and the machines where they differ (equal configs trained on other processors round differently)
    assert not any("different machines" in x for x in compare(a, b))
    amd, intel = "AMD EPYC, torch 2.14, 1 threads", "Intel Xeon, torch 2.14, 1 threads"
    for path, chip, trained in ((a, "AMD EPYC", [amd]), (b, "Intel Xeon", [amd, intel])):
        m = json.loads((path / "metrics.json").read_text())
        m["protocol"]["machine"] = {"cpu": "x86_64", "cpu_model": chip, "torch": "2.14", "threads": "1", "device": "cpu"}
        m["protocol"]["train_machines"] = trained
        (path / "metrics.json").write_text(json.dumps(m))
    lines = compare(a, b)
    assert f"supernets trained on different machines: {amd} vs {amd} then {intel} (A vs B)" in lines
    assert f"scored on different machines: {amd} vs {intel} (A vs B)" in lines
    assert not any(x.startswith(("scoring data differ", "training data differ")) for x in lines)
    for path, folder in ((a, "/data/cifar10"), (b, "/data/cifar10-q50")):  # the same run on a re-encoding
        m = json.loads((path / "metrics.json").read_text())
        m["protocol"]["train_data"] = f"CIFAR-10 image folder {folder}"
        (path / "metrics.json").write_text(json.dumps(m))
    lines = compare(a, b)
    assert ("training data differ: CIFAR-10 image folder /data/cifar10 vs CIFAR-10 image folder /data/cifar10-q50 "
            "(A vs B)") in lines
    assert not any(x.startswith("scoring data differ") for x in lines)  # both scored on the same images
    for path, folder in ((a, "/data/cifar10"), (b, "/data/cifar10-q50")):
        m = json.loads((path / "metrics.json").read_text())
        m["protocol"]["data"] = f"CIFAR-10 image folder {folder}"
        (path / "metrics.json").write_text(json.dumps(m))
    assert ("scoring data differ: CIFAR-10 image folder /data/cifar10 vs CIFAR-10 image folder /data/cifar10-q50 "
            "(A vs B)") in compare(a, b)
    same = next(x for x in compare(a, a) if x.startswith("| acc |"))
    assert "| +0.000 [+0.000, +0.000] | 0% |" in same
    assert main(["compare", str(a), str(b)]) == 0
    assert "| scored by | tau A [95% CI]" in capsys.readouterr().out
    other = fake_rank_run(tmp_path / "other", 1, "uniform", 0, n=30)  # another arch sample
    with pytest.raises(UserError, match="arch_set"):
        compare(a, other)
    with pytest.raises(UserError, match="not a rank run"):
        compare(a, root)


def test_one_budget_figures_draw_the_budget_that_compares_the_most(tmp_path):
    """Snapshots of a K=4 run past the last one-shot snapshot do not push one-shot off Figs. 4 and 5: they
    draw the largest budget at which both K values were scored; Fig. 7 draws every budget."""
    root = tmp_path / "runs"
    fake_rank_run(root, 1, "uniform", 0, epochs=50, tau=0.1)
    for e in (50, 100, 150):
        fake_rank_run(root, 4, "simplex", 0, epochs=e, tau=0.2 + e / 1000)
    text = build_report([root], tmp_path / "r").read_text()
    assert "Fig. 4 (50-epoch runs)" in text and "Fig. 5 (50-epoch runs)" in text
    assert "fig7_tau_vs_k_epochs.png" in text
    fake_rank_run(root, 1, "uniform", 0, epochs=150, tau=0.3)
    text = build_report([root], tmp_path / "r2").read_text()
    assert "Fig. 4 (150-epoch runs)" in text and "Fig. 5 (150-epoch runs)" in text


def test_noise_ceiling_row_and_line_where_the_truth_has_repeats(tmp_path):
    """A run on a space whose table ships independent trainings (NAS-Bench-Macro) gets the noise-ceiling row
    (their agreement on the run's archs) in Table 4 and a line in Fig. 7; an NB201 run gets neither."""
    from kshot_bench.ground_truth import noise_ceiling
    from kshot_bench.search_space import macro

    root = tmp_path / "runs"
    for e in (5, 10):
        d = fake_rank_run(root, 1, "uniform", 0, epochs=e, n=60)
        m = json.loads((d / "metrics.json").read_text())
        m["protocol"].update(space="macro", truth="mean_acc")
        (d / "metrics.json").write_text(json.dumps(m))
    text = build_report([root], tmp_path / "r").read_text()
    expected = noise_ceiling(macro, "cifar10", np.arange(60))["kendall_tau"]
    assert "ablation of the K-shot parts (ranking quality on NAS-Bench-Macro)" in text
    row = next(x for x in text.splitlines() if x.startswith("| noise ceiling: two independent trainings"))
    assert f"{expected:.3f}" in row and "pairs: " in row
    assert f"Dash-dot line: the noise ceiling, {expected:.3f}" in text
    nb = fake_rank_run(tmp_path / "nb", 1, "uniform", 0)
    assert "noise ceiling" not in build_report([nb], tmp_path / "r2").read_text()


def test_tau_without_the_archs_that_output_a_constant_is_reported(tmp_path):
    root = tmp_path / "runs"
    d = fake_rank_run(root, 4, "simplex", 0, tau=0.5)
    m = json.loads((d / "metrics.json").read_text())
    m["without_no_path"] = {"n_archs": 37, "kendall_tau": 0.456, "ci95": {"kendall_tau": [0.41, 0.5]},
                            "split_tau": {"10": 0.8, "50": 0.6, "100": 0.55}}
    (d / "metrics.json").write_text(json.dumps(m))
    fake_rank_run(root, 1, "uniform", 0)  # written before the field existed: no row
    text = build_report([root], tmp_path / "r").read_text()
    section = text.split("### Without the archs whose network outputs a constant")[1].split("\n### ")[0]
    rows = [x for x in section.splitlines()
            if x.startswith("| K-shot") or x.startswith("| one-shot")]
    assert rows == ["| K-shot + simplex-net | 4 | 10 | 37 of 40 | 0.456 [0.410, 0.500] | 0.500 | 0.80 / 0.60 / 0.55 | "
                    "k4-simplex-e10-s0 (h4si010) |"]
    assert "outputs a constant" not in build_report([root / "k1-oneshot-e10-s0"], tmp_path / "r2").read_text()


def test_top_of_the_ranking_table_lists_runs_and_baselines(tmp_path):
    """Top-n tau, P@k and regret of each run and of each baseline on the same archs, recomputed from the
    run's predictions (so older runs follow the current definitions, e.g. P@k with shared ties)."""
    from kshot_bench.ground_truth import baseline_scores
    from kshot_bench.datasets import DATASETS
    from kshot_bench.metrics import all_metrics
    from kshot_bench.results import fmt
    from kshot_bench.search_space import nb201

    root = tmp_path / "runs"
    d = fake_rank_run(root, 4, "simplex", 0)
    m = json.loads((d / "metrics.json").read_text())
    m["precision_at_k"] = {"10": 0.99}  # stale: not what the predictions give
    (d / "metrics.json").write_text(json.dumps(m))
    lines = build_report([root], tmp_path / "r").read_text().split("### The top of the ranking")[1].splitlines()
    with open(d / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    truth = np.array([float(r["truth"]) for r in rows])

    def cells(x):
        return (" / ".join(fmt(x["top_tau"].get(n), 2) for n in ("10", "50", "100")) + " | "
                + " / ".join(fmt(x["precision_at_k"].get(n), 2) for n in ("10", "50", "100")) + f" | {fmt(x['regret'], 2)}")

    run = all_metrics([float(r["score"]) for r in rows], truth)
    assert f"| K-shot + simplex-net | 4 | 10 | {cells(run)} | k4-simplex-e10-s0 (h4si010) |" in lines
    keys = [int(r["index"]) for r in rows]
    params = baseline_scores(nb201, DATASETS.get("cifar10"), keys, [nb201.from_key(k) for k in keys])["params"][0]
    assert any(x.startswith(f"| baseline: parameter count (NB201) | – | – | {cells(all_metrics(params, truth))} |")
               for x in lines)


def test_snapshots_take_their_training_runs_log(tmp_path):
    """A snapshot scored from a checkpoint (`rank --checkpoint RUN_DIR`) has no train/log.csv of its own: the
    report reads the training run's log up to the snapshot's epoch, counts each training run once in Table 1,
    and copies those rows beside the run's files."""
    train = tmp_path / "train-k4"
    (train / "snapshots").mkdir(parents=True)
    with open(train / "log.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "phase", "time_s", "images_per_s", "peak_mem_mb"])
        w.writeheader()
        for e in range(1, 21):
            w.writerow({"epoch": e, "phase": "warmup" if e <= 2 else "kshot", "time_s": 100 + e, "images_per_s": 250,
                        "peak_mem_mb": 900})
    root = tmp_path / "curve"
    for e in (10, 20):
        d = fake_rank_run(root, 4, "simplex", 0, epochs=e, with_log=False)
        m = json.loads((d / "metrics.json").read_text())
        m["protocol"]["config_hash"] = "samerun"
        m["protocol"]["supernet"] = f"checkpoint {train}/snapshots/epoch-{e:04d}.pt"
        (d / "metrics.json").write_text(json.dumps(m))
    text = build_report([root], tmp_path / "r").read_text()
    row = next(x for x in text.splitlines() if x.startswith("| 4 | simplex |"))
    kshot = [100 + e for e in range(3, 21)]  # the 20-epoch snapshot's rows, once
    assert f"{np.mean(kshot):.1f} ± {np.std(kshot, ddof=1):.1f} (n=18) | {np.median(kshot):.1f} |" in row
    assert "k4-simplex-e20-s0" in row
    copied = (tmp_path / "r" / "runs" / "curve" / "k4-simplex-e10-s0" / "train" / "log.csv").read_text().splitlines()
    assert len(copied) == 11 and copied[-1].startswith("10,kshot")


def test_accuracy_against_loss_per_run(tmp_path):
    """Each run's tau by accuracy and by loss, paired on its archs; runs with equal losses are left out."""
    root = tmp_path / "runs"
    better, worse = fake_rank_run(root, 4, "simplex", 0, n=200), fake_rank_run(root, 1, "uniform", 0, n=200)
    fake_rank_run(root, 4, "uniform", 0)  # every loss 1.0: no ranking by loss, no row
    rng = np.random.default_rng(3)
    for d, noise in ((better, 0.5), (worse, 30.0)):  # loss: the truth with little / much noise
        with open(d / "predictions.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            r["val_loss"] = 3.0 - (float(r["truth"]) + rng.normal(0, noise)) / 40
        with open(d / "predictions.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    text = build_report([root], tmp_path / "r").read_text()
    section = text.split("### Scored by accuracy or by validation loss")[1].split("\n### ")[0]
    rows = {x.split(" | ")[-1].rstrip(" |"): x.split(" | ") for x in section.splitlines() if x.startswith("| cifar10 |")}
    assert set(rows) == {"k4-simplex-e10-s0 (h4si010)", "k1-oneshot-e10-s0 (h1un010)"}
    diff = {label: float(cells[7].split(" [")[0]) for label, cells in rows.items()}
    assert diff["k4-simplex-e10-s0 (h4si010)"] > 0.2 and diff["k1-oneshot-e10-s0 (h1un010)"] < -0.2
    assert "Loss ranks better in 1 of 2 runs and worse in 1" in section


def test_runs_of_other_samplings_are_never_pooled_or_paired_as_one(tmp_path):
    """A K=4 run trained on balanced paths and one on uniform paths (same seed, budget and archs): Table 4 keeps
    them in rows of their own, named by sampling; K-shot pairs only with the one-shot run of its own sampling;
    and the sampling table gives the paired difference balanced minus uniform."""
    from kshot_bench import metrics as stats

    root = tmp_path / "runs"
    one = fake_rank_run(root, 1, "uniform", 0, sampling="balanced")
    with open(one / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    truth = np.array([float(r["truth"]) for r in rows])
    rng = np.random.default_rng(3)
    scores = {}
    for sampling, noise in (("balanced", 1.0), ("uniform", 6.0)):
        d = fake_rank_run(root, 4, "simplex", 0, sampling=sampling)
        scores[sampling] = truth + rng.normal(0, noise, len(truth))
        with open(d / "predictions.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["lam_1", "lam_2", "lam_3"])
            w.writeheader()
            for r, sc in zip(rows, scores[sampling]):
                w.writerow({**r, "score": sc, "lam_0": 0.25, "lam_1": 0.25, "lam_2": 0.25, "lam_3": 0.25})
    lines = build_report([root], tmp_path / "r").read_text().splitlines()
    t4 = [x for x in lines if x.startswith("| K-shot + simplex-net")]
    # a report that mixes samplings names every run's, uniform (the paper's protocol) first
    assert [x.split(" | ")[0] for x in t4[:2]] == ["| K-shot + simplex-net, uniform paths",
                                                   "| K-shot + simplex-net, balanced paths"]
    assert all("(n=1)" in x for x in t4[:2]) and not any("(n=2)" in x for x in t4)
    assert any(x.startswith("| 4 | simplex, uniform paths | ") for x in lines)  # Table 1 (cost): a row per sampling too
    assert any(x.startswith("| 4 | simplex, balanced paths | ") for x in lines)
    start = lines.index("### Paired comparisons: K-shot against one-shot on the same archs and images")
    paired_rows = [x for x in lines[start + 4:lines.index("", start + 2)]]
    assert [x.split(" | ")[1] for x in paired_rows] == ["K-shot + simplex-net, balanced paths"]  # its own sampling only
    row = next(x for x in lines if x.startswith("| cifar10 | K-shot + simplex-net | 4 | 10 | 0 | balanced |"))
    want = stats.paired_tau_diff(scores["balanced"], scores["uniform"], truth)
    assert f"{want['diff']:+.3f} [{want['ci_lo']:+.3f}, {want['ci_hi']:+.3f}]" in row and want["ci_lo"] > 0
    # alone, a uniform run keeps the paper's plain name
    alone = build_report([root / "k4-simplex-e10-s0-uniform"], tmp_path / "alone").read_text()
    assert "| K-shot + simplex-net | 4 |" in alone and "uniform paths" not in alone


def test_two_scorings_of_one_supernet_are_refused_not_pooled_as_seeds(tmp_path):
    """The same trained supernet (config and epoch) scored twice, e.g. on 40 and on 60 archs: a report would
    pool them as two seeds of one method (n=2, a spread that is not seed noise). It refuses, naming both."""
    first = fake_rank_run(tmp_path / "a", 4, "simplex", 0)
    again = fake_rank_run(tmp_path / "b", 4, "simplex", 0, n=60)
    fake_rank_run(tmp_path / "a", 4, "simplex", 1)  # another seed: fine
    with pytest.raises(UserError, match="score the same trained supernet") as err:
        build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "r")
    assert str(first) in str(err.value) and str(again) in str(err.value) and "pass only one" in err.value.fix
    assert "(n=2)" in build_report([tmp_path / "a"], tmp_path / "r").read_text()  # two seeds still pool


def test_archs_that_are_one_network_get_their_score_spread_per_run(tmp_path):
    """NB201 archs with the same live edges are one network in the supernet: the table gives, per run, the mean
    range of its scores and of the truth inside such groups; a run whose archs share no network has no row."""
    from kshot_bench.search_space import nb201

    by_key = {}
    for i in range(nb201.NUM_ARCHS):
        by_key.setdefault(nb201.network_key(nb201.from_index(i)), []).append(i)
    pairs = [g[:2] for g in by_key.values() if len(g) >= 2][:3]  # three groups of two archs each
    singles = [g[0] for g in by_key.values() if len(g) == 1][:10]
    root = tmp_path / "runs"
    runs = {k: fake_rank_run(root, k, "simplex" if k == 4 else "uniform", 0, n=16) for k in (1, 4)}
    lone = fake_rank_run(root, 4, "uniform", 0, n=10)
    for k, d in list(runs.items()) + [(0, lone)]:
        lams = 1 if k == 1 else 4
        with open(d / "predictions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "arch_str", "score", "truth", "val_loss"] + [f"lam_{i}" for i in range(lams)])
            rows = [(i, 50.0 + j, 90.0 + j) for j, i in enumerate(singles)]
            if k:
                for j, (a, b) in enumerate(pairs):  # in group j: scores 1 + j apart under K=4, the truth j / 2
                    rows += [(a, 70.0, 93.0), (b, 70.0 + (1 + j) * (k == 4), 93.0 + j / 2)]
            for i, score, truth in rows:
                w.writerow([i, nb201.to_str(nb201.from_index(i)), score, truth, 1.0] + [1 / lams] * lams)
    text = build_report([root], tmp_path / "r").read_text()
    section = text.split("### Archs that are one network in the supernet")[1].split("\n### ")[0]
    rows = {x.split(" | ")[-1].rstrip(" |"): x.split(" | ") for x in section.splitlines() if x.startswith("| cifar10 |")}
    assert set(rows) == {"k1-oneshot-e10-s0 (h1un010)", "k4-simplex-e10-s0 (h4si010)"}
    one, four = rows["k1-oneshot-e10-s0 (h1un010)"], rows["k4-simplex-e10-s0 (h4si010)"]
    assert one[5] == four[5] == "6 of 16 in 3"
    assert float(one[6]) == 0.0 and float(four[6]) == pytest.approx(2.0, abs=0.005)  # (1 + 2 + 3) / 3
    assert float(one[7]) == float(four[7]) == pytest.approx(0.5, abs=0.005)  # (0 + 0.5 + 1) / 3


def test_runs_of_other_off_path_rules_are_never_pooled_and_pair_in_their_own_table(tmp_path):
    """One-shot runs under `decay` and under `none` (same seed, budget and archs) are other methods: rows of their
    own in Table 4, and the off-path table gives decay minus none, paired; a K=4 `none` run pairs with the `none`
    one-shot run only."""
    from kshot_bench import metrics as stats

    root = tmp_path / "runs"
    plain = fake_rank_run(root, 1, "uniform", 0, sampling="balanced")
    decay = fake_rank_run(root, 1, "uniform", 0, sampling="balanced", offpath="decay")
    k4 = fake_rank_run(root, 4, "simplex", 0, sampling="balanced")
    with open(plain / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    truth = np.array([float(r["truth"]) for r in rows])
    better = truth + np.random.default_rng(5).normal(0, 1.0, len(truth))
    with open(k4 / "predictions.csv", "w", newline="") as fh:  # the same archs and truth as the one-shot runs
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["lam_1", "lam_2", "lam_3"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "lam_0": 0.25, "lam_1": 0.25, "lam_2": 0.25, "lam_3": 0.25})
    with open(decay / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r, sc in zip(rows, better):
            w.writerow({**r, "score": sc})
    lines = build_report([root], tmp_path / "r").read_text().splitlines()
    t4 = [x.split(" | ")[0] for x in lines if x.startswith("| one-shot")]
    assert "| one-shot (K=1), balanced paths" in t4 and "| one-shot (K=1), balanced paths, off-path decay" in t4
    start = lines.index("### Paired comparisons: K-shot against one-shot on the same archs and images")
    paired_rows = lines[start + 4:lines.index("", start + 2)]
    assert len(paired_rows) == 1  # K=4 (none) against the none one-shot run only
    row = next(x for x in lines if x.startswith("| cifar10 | one-shot (K=1), balanced paths | 1 | 10 | 0 | decay |"))
    pb = np.array([float(r["score"]) for r in rows])
    want = stats.paired_tau_diff(better, pb, truth)
    assert f"{want['diff']:+.3f} [{want['ci_lo']:+.3f}, {want['ci_hi']:+.3f}]" in row


def test_training_diagnostics_table_reads_the_log(tmp_path):
    """The report's diagnostics table: codes, copies and weights from a run's log at the end of warm-up, each quarter
    of the rest and the end; logs without the weight columns are left out."""
    root = tmp_path / "runs"
    d = fake_rank_run(root, 4, "simplex", 0, epochs=10)
    fields = ["epoch", "phase", "time_s", "images_per_s", "peak_mem_mb", "train_loss", "simplex_loss", "code_entropy",
              "code_spread", "copy_spread_ops", "copy_spread_trunk", "w_rms_ops", "w_rms_trunk"]
    with open(d / "train" / "log.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for e in range(1, 11):
            w.writerow({"epoch": e, "phase": "warmup" if e <= 2 else "kshot", "time_s": 40, "images_per_s": 500,
                        "peak_mem_mb": 1000, "train_loss": 2.0 - e / 10, "simplex_loss": "" if e <= 2 else 1.5,
                        "code_entropy": 1.0 - e / 100, "code_spread": e / 100, "copy_spread_ops": 1.7 - e / 10,
                        "copy_spread_trunk": 1.6, "w_rms_ops": 0.2, "w_rms_trunk": 0.3})
    fake_rank_run(root, 1, "uniform", 0, epochs=10)  # its log lacks the columns: no rows
    lines = build_report([root], tmp_path / "r").read_text().splitlines()
    start = lines.index("### Training diagnostics: codes, copies and weights over the epochs")
    rows = [x for x in lines[start + 4:] if x.startswith("| ")]
    rows = rows[:next((i for i, x in enumerate(rows) if not x.startswith("| K-shot")), len(rows))]
    assert [x.split(" | ")[2] for x in rows] == ["2", "4", "6", "8", "10"]  # warm-up end, quarters, end
    assert rows[-1].split(" | ")[8] == "0.700"  # copy spread of the ops at epoch 10


def test_compare_over_seeds_pairs_each_seed_and_averages(tmp_path, capsys):
    """`compare A B --pair A2 B2`: each pair's paired difference (as `compare` gives it) and their mean over the
    seeds with an interval over seeds and archs; A better than B in both seeds reads above 0, a run against itself
    reads exactly 0; unpaired runs and score files are refused by name."""
    import shutil

    import pandas as pd

    from kshot_bench import metrics as stats
    from kshot_bench.cli import main
    from kshot_bench.compare_runs import compare_seeds

    root = tmp_path / "runs"
    pairs, rng = [], np.random.default_rng(3)
    for seed in (0, 1):
        b = fake_rank_run(root, 1, "uniform", seed, n=60)
        a = root / f"better-s{seed}"
        shutil.copytree(b, a)
        for path, noise in ((a, 1.0 + seed), (b, 8.0)):  # a ranks close to the truth, b barely
            with open(b / "predictions.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            with open(path / "predictions.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                for r in rows:
                    w.writerow({**r, "score": float(r["truth"]) + rng.normal(0, noise),
                                "val_loss": 3.0 - float(r["truth"]) / 40 + rng.normal(0, noise / 40)})
        pairs.append((a, b))
    lines = compare_seeds(pairs)
    diffs = []
    for a, b in pairs:
        pa, pb = (pd.read_csv(p / "predictions.csv") for p in (a, b))
        d = stats.paired_tau_diff(pa["score"], pb["score"], pa["truth"])
        diffs.append(d["diff"])
        assert any(f"| {d['diff']:+.3f} [{d['ci_lo']:+.3f}, {d['ci_hi']:+.3f}] |" in x for x in lines)
    across = next(x for x in lines if x.startswith("across the 2 pairs, by acc"))
    assert f"mean A - B {np.mean(diffs):+.3f} [" in across and min(diffs) > 0
    lo = float(across.split("[")[1].split(",")[0])
    assert lo > 0  # both seeds far apart in the same direction
    assert any(x.startswith("across the 2 pairs, by loss") for x in lines)
    itself = compare_seeds([(a, a) for a, _ in pairs])
    assert "mean A - B +0.000 [+0.000, +0.000]" in next(x for x in itself if "by acc" in x)
    assert main(["compare", str(pairs[0][0]), str(pairs[0][1]), "--pair", str(pairs[1][0]), str(pairs[1][1])]) == 0
    out = capsys.readouterr().out
    assert "| scored by | tau A [95% CI]" in out and "## A - B over 2 pairs" in out
    with pytest.raises(UserError, match="did not score the same archs"):  # seed 1's archs are another sample
        compare_seeds([(pairs[0][0], pairs[1][1]), pairs[1]])
    scores = tmp_path / "scores.csv"
    scores.write_text("arch_str,score\nx,1\n")
    assert main(["compare", str(pairs[0][0]), str(pairs[0][1]), "--pair", str(pairs[1][0]), str(scores)]) == 2
    out, err = capsys.readouterr()
    assert "--pair compares rank runs only" in err and "scores.csv" in err and not out  # refused before any output


def test_compare_common_archs_pairs_two_scoring_protocols_on_the_archs_both_scored(tmp_path, capsys):
    """`compare --common-archs`: one supernet scored on two protocols (other images, a smaller arch sample listed
    in another order) is paired on the archs both scored: a subset of a run's own scores differs from it by exactly
    0, and noisier scores of the same archs by what metrics.paired_tau_diff gives on the aligned archs; other truths
    and too few shared archs are refused, and without the flag the differing protocols are."""
    from kshot_bench import metrics as stats
    from kshot_bench.cli import main
    from kshot_bench.compare_runs import compare

    b = fake_rank_run(tmp_path / "valid", 1, "uniform", 0, n=40)
    with open(b / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked = [rows[i] for i in np.random.default_rng(1).permutation(40)[:25]]  # A's own order, a subset

    def subset_run(name, noise, truth_shift=0.0, n=25):
        d = tmp_path / name
        d.mkdir()
        m = json.loads((b / "metrics.json").read_text())
        m["protocol"].update(arch_set=f"a seeded uniform sample of {n} archs", score_set="5,120 test images")
        (d / "metrics.json").write_text(json.dumps(m))
        rng = np.random.default_rng(2)
        with open(d / "predictions.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            for r in picked[:n]:
                w.writerow({**r, "score": float(r["score"]) + rng.normal(0, noise),
                            "truth": float(r["truth"]) + truth_shift})
        return d

    same = compare(subset_run("same", 0.0), b, common=True)
    assert "| acc | " in "\n".join(same) and "+0.000 [+0.000, +0.000]" in next(x for x in same if x.startswith("| acc |"))
    assert next(x for x in same if x.startswith("on the 25 archs both scored"))
    assert "A scored on 5,120 test images" in same and "B scored on 64 images" in same
    noisy = subset_run("noisy", 6.0)
    lines = compare(noisy, b, common=True)
    with open(noisy / "predictions.csv", newline="") as fh:
        mine = list(csv.DictReader(fh))
    by_index = {r["index"]: r for r in rows}
    want = stats.paired_tau_diff(np.array([float(r["score"]) for r in mine]),
                                 np.array([float(by_index[r["index"]]["score"]) for r in mine]),
                                 np.array([float(r["truth"]) for r in mine]))
    assert f"{want['diff']:+.3f} [{want['ci_lo']:+.3f}, {want['ci_hi']:+.3f}]" in next(
        x for x in lines if x.startswith("| acc |"))
    with pytest.raises(UserError, match="arch_set, score_set"):
        compare(noisy, b)
    with pytest.raises(UserError, match="different truths"):
        compare(subset_run("shifted", 0.0, truth_shift=1.0), b, common=True)
    with pytest.raises(UserError, match="5 scored archs in common"):
        compare(subset_run("few", 0.0, n=5), b, common=True)
    assert main(["compare", str(noisy), str(b), "--common-archs"]) == 0
    assert "on the 25 archs both scored" in capsys.readouterr().out


def test_fig7_tells_variants_of_one_k_apart_by_marker(tmp_path, monkeypatch):
    """Two simplex-net variants at K=4 share K-shot's colour in Fig. 7; each line gets its own marker."""
    import matplotlib.axes

    from kshot_bench.report_figures import fig7
    from kshot_bench.report_runs import discover

    root = tmp_path / "runs"
    for epochs in (5, 10):
        fake_rank_run(root, 1, "uniform", 0, epochs=epochs)
        for variant in ("joint", "joint-shared"):
            d = fake_rank_run(root / variant, 4, "simplex", 0, epochs=epochs)
            m = json.loads((d / "metrics.json").read_text())
            m["protocol"]["simplex_variant"] = variant
            m["protocol"]["config_hash"] += variant
            (d / "metrics.json").write_text(json.dumps(m))
    drawn = []
    real = matplotlib.axes.Axes.errorbar

    def spy(self, *args, **kwargs):
        drawn.append((kwargs.get("label"), kwargs.get("marker"), kwargs.get("color")))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    name, _ = fig7(discover([root]).ranks, tmp_path)
    assert name == "fig7_tau_vs_k_epochs.png"
    kshot = [d for d in drawn if d[0].startswith("K=4")]
    assert len(kshot) == 2 and kshot[0][2] == kshot[1][2] and kshot[0][1] != kshot[1][1], drawn
