import csv
import io
import subprocess
import sys

import pytest
import torch

from kshot_bench.cli import main

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cost_one_arch(capsys, truth_csv):
    code, out, _ = run(capsys, "cost", "--dataset", "cifar10", "--arch", BEST)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["arch_str"] == BEST
    index = int(rows[0]["index"])
    assert truth_csv.loc[index, "arch_str"] == BEST
    assert int(rows[0]["params"]) == round(truth_csv.loc[index, "params_M_cifar10"] * 1e6)


def test_cost_indices_and_all(capsys, truth_csv):
    code, out, _ = run(capsys, "cost", "--dataset", "ImageNet16-120", "--index", "0", "857")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["index"] for r in rows] == ["0", "857"]
    assert int(rows[1]["params"]) == round(truth_csv.loc[857, "params_M_imagenet16"] * 1e6)
    code, out, _ = run(capsys, "cost", "--dataset", "cifar100", "--all")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 15625 and rows[6111]["arch_str"] == truth_csv.loc[6111, "arch_str"]
    # all-3x3 cell: 220,119,690 for 10 classes (the NB201 maximum) + 90 more classes x (64 weights + 1 bias)
    assert max(int(r["flops"]) for r in rows) == 220_119_690 + 90 * 65


@pytest.mark.parametrize("argv, words", [
    (["cost", "--arch", "|nor_conv_3x3~0|+|bad"], "malformed"),
    (["cost", "--arch", BEST.replace("skip_connect", "sep_conv_3x3")], "unknown op 'sep_conv_3x3'"),
    (["cost", "--index", "15625"], "out of range"),
    (["train", "--k", "0", "--data-root", ".", "--out", "x"], "K must be >= 1"),
    (["train", "--code", "learned", "--data-root", ".", "--out", "x"], "unknown code mode 'learned'"),
    (["train", "--preset", "gpu", "--data-root", ".", "--out", "x"], "unknown preset 'gpu'"),
    (["train", "--set", "epochz=3", "--data-root", ".", "--out", "x"], "unknown config key 'epochz'"),
    (["train", "--set", "epochs=three", "--data-root", ".", "--out", "x"], "takes an integer"),
    (["train", "--preset", "smoke", "--data-root", "/nonexistent/cifar", "--out", "x"], "does not exist"),
    (["rank", "--preset", "smoke", "--data-root", "/nonexistent/cifar", "--out", "x"], "does not exist"),
])
def test_bad_input_exits_2_with_a_fix(capsys, tmp_path, argv, words):
    argv = [a if a != "x" else str(tmp_path / "run") for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert words in err and "fix:" in err
    assert not (tmp_path / "run").exists()  # refused input leaves no empty run folder behind


def test_sigterm_saves_progress_like_ctrl_c(tmp_path, tiny_cifar_folder):
    """`kill` (SIGTERM; also SIGINT where a background start ignores it) stops a run with its checkpoint written."""
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "kshot_bench.cli", "train", "--preset", "smoke", "--k", "2", "--quiet",
           "--data-root", str(tiny_cifar_folder), "--out", str(out), "--set", "epochs=10000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (out / "log.csv").exists() and time.time() < deadline:  # an epoch is done: training is under way
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "checkpoint saved" in err, err
    from kshot_bench.rundir import load_checkpoint

    state = load_checkpoint(out / "checkpoint.pt", torch.device("cpu"))
    assert state["epoch"] * 100 + state["step_in_epoch"] > 0


def test_empty_data_dir_lists_expected_layouts(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--preset", "smoke", "--data-root", str(tmp_path), "--offline", "--out", str(tmp_path / "r"))
    assert code == 2 and "no CIFAR-10 data" in err and "cifar-10-batches-py" in err


def test_console_script_train_and_refuse_overwrite(tmp_path, tiny_cifar_folder):
    cmd = [sys.executable, "-m", "kshot_bench.cli", "train", "--preset", "smoke", "--k", "2", "--quiet",
           "--data-root", str(tiny_cifar_folder), "--out", str(tmp_path / "run")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "done: 2 epochs" in done.stdout
    for name in ("config.json", "log.csv", "checkpoint.pt", "supernet.pt"):
        assert (tmp_path / "run" / name).exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "already finished" in resumed.stdout


@pytest.fixture(scope="module")
def ranked(tmp_path_factory, tiny_cifar_folder):
    out = tmp_path_factory.mktemp("rank") / "k3"
    code = main(["rank", "--dataset", "cifar10", "--k", "3", "--preset", "smoke", "--quiet", "--archs", "20",
                 "--data-root", str(tiny_cifar_folder), "--out", str(out)])
    assert code == 0
    return out


def test_rank_writes_every_result_file(ranked, truth_csv, tiny_cifar_folder):
    import json

    for name in ("predictions.csv", "metrics.json", "baselines.json", "summary.md", "scatter.png", "config.json",
                 "train/supernet.pt", "train/log.csv"):
        assert (ranked / name).exists(), name
    rows = list(csv.DictReader(open(ranked / "predictions.csv")))
    assert len(rows) == 20
    assert list(rows[0]) == ["index", "arch_str", "score", "truth", "val_loss", "lam_0", "lam_1", "lam_2"]
    for r in rows:
        assert truth_csv.loc[int(r["index"]), "arch_str"] == r["arch_str"]
        assert float(r["truth"]) == pytest.approx(truth_csv.loc[int(r["index"]), "cifar10_test_200ep"])
        assert sum(float(r[f"lam_{i}"]) for i in range(3)) == pytest.approx(1.0, abs=1e-4)
    m = json.loads((ranked / "metrics.json").read_text())
    for key in ("kendall_tau", "spearman", "split_tau", "top_tau", "precision_at_k", "regret", "n_archs", "protocol"):
        assert key in m
    assert m["n_archs"] == 20 and m["protocol"]["n_score_images"] == 64 and m["protocol"]["train_precision"] == "fp32"
    assert m["protocol"]["train_data"] == m["protocol"]["data"] and str(tiny_cifar_folder) in m["protocol"]["data"]
    b = json.loads((ranked / "baselines.json").read_text())
    assert {"params", "naswot", "synflow", "logsynflow", "nregions", "train_12ep"} <= set(b) and "random" not in b
    assert not (ranked / "predictions.partial.csv").exists()


def test_rank_from_checkpoint_and_mismatches(capsys, ranked, tiny_cifar_folder, tmp_path):
    ckpt = str(ranked / "train" / "supernet.pt")
    base = ["rank", "--checkpoint", ckpt, "--data-root", str(tiny_cifar_folder), "--preset", "smoke", "--quiet"]
    code, out, err = run(capsys, *base, "--archs", "30", "--set", "score_images=16", "--set", "bn_calibration=32",
                         "--out", str(tmp_path / "u"))
    assert code == 0, err
    import json
    m = json.loads((tmp_path / "u" / "metrics.json").read_text())
    assert m["n_archs"] == 30 and m["protocol"]["k"] == 3 and m["protocol"]["n_score_images"] == 16
    assert m["protocol"]["bn_calibration"] == 32 and "re-estimated over 32 images" in m["protocol"]["score_set"]
    assert m["protocol"]["train_precision"] == "fp32"  # read from the checkpoint
    # scored on a copy of the images: `data` names the scoring folder, `train_data` the checkpoint's own
    import shutil
    copy = shutil.copytree(tiny_cifar_folder, tmp_path / "copy")
    code, _, err = run(capsys, "rank", "--checkpoint", ckpt, "--data-root", str(copy), "--preset", "smoke", "--quiet",
                       "--archs", "5", "--set", "score_images=16", "--out", str(tmp_path / "c"))
    assert code == 0, err
    p = json.loads((tmp_path / "c" / "metrics.json").read_text())["protocol"]
    assert str(copy) in p["data"] and str(tiny_cifar_folder) in p["train_data"] and str(copy) not in p["train_data"]
    assert f"- the supernet's training images: {p['train_data']}" in (tmp_path / "c" / "summary.md").read_text()
    assert "- the supernet's training images" not in (tmp_path / "u" / "summary.md").read_text()
    from kshot_bench.rundir import machine_info, machine_label
    assert m["protocol"]["train_machines"] == [machine_label(machine_info(torch.device("cpu")))]  # and this
    assert "- training machines: " + m["protocol"]["train_machines"][0] in (tmp_path / "u" / "summary.md").read_text()
    import numpy
    assert m["protocol"]["machine"]["numpy"] == numpy.__version__ and m["protocol"]["machine"]["pillow"]
    for flags, words in ((["--k", "4"], "k: checkpoint 3, asked 4"),
                         (["--dataset", "cifar100"], "dataset: checkpoint 'cifar10', asked 'cifar100'"),
                         (["--truth", "cifar10_best"], "unknown ground-truth column"),
                         (["--archs", "lots"], "unknown arch set")):
        code, _, err = run(capsys, *base, *flags, "--out", str(tmp_path / "x"))
        assert code == 2 and words in err, err


def test_rank_dataset_without_data(capsys, tmp_path):
    code, _, err = run(capsys, "rank", "--dataset", "cifar100", "--preset", "smoke", "--data-root", str(tmp_path),
                       "--offline", "--out", str(tmp_path / "r"))
    assert code == 2 and "no CIFAR-100 data" in err and "fix:" in err


@pytest.mark.parametrize("dataset, writer, truth_col, params_col", [
    ("cifar100", "write_cifar100", "cifar100_xtest_200ep", "params_M_cifar100"),
    ("ImageNet16-120", "write_imagenet16", "imagenet16_xtest_200ep", "params_M_imagenet16"),
])
def test_rank_other_datasets_end_to_end(tmp_path, truth_csv, dataset, writer, truth_col, params_col):
    import json

    import conftest

    root = getattr(conftest, writer)(tmp_path / "data")
    out = tmp_path / "rank"
    code = main(["rank", "--dataset", dataset, "--k", "2", "--preset", "smoke", "--quiet", "--archs", "10",
                 "--data-root", str(root), "--out", str(out)])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"]["truth"] == truth_col and m["protocol"]["dataset"] == dataset
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    for r in rows:
        assert float(r["truth"]) == pytest.approx(truth_csv.loc[int(r["index"]), truth_col])
    b = json.loads((out / "baselines.json").read_text())
    assert b["params"]["description"].startswith("parameter count")
    assert "xvalid" in m["protocol"]["score_set"]


def test_rank_without_data_root_uses_the_embedded_sample(capsys, tmp_path):
    import json

    code, out, _ = run(capsys, "rank", "--dataset", "cifar10", "--k", "2", "--preset", "smoke", "--quiet",
                       "--out", str(tmp_path / "r"))
    assert code == 0
    first = out.splitlines()[:2]
    assert first[1].startswith("data: the embedded CIFAR-10 sample") and "--data-root DIR" in first[1]
    protocol = json.loads((tmp_path / "r" / "metrics.json").read_text())["protocol"]
    assert protocol["data"].startswith("embedded CIFAR-10 sample")
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "Kendall" in summary and "(NAS-Bench-201, the embedded table)" in summary and "network C=" in summary
    assert "SPOS 55.0%, K-shot 62.64%" in summary  # the paper's Table 4 for scale


def test_default_preset_is_demo_on_the_sample_and_cpu_with_data():
    from kshot_bench.cli import _default_preset, build_parser

    for argv, preset in ((["rank"], "demo"), (["rank", "--data-root", "d"], "cpu"), (["rank", "--checkpoint", "c"], "cpu"),
                         (["train", "--out", "o"], "demo"), (["rank", "--preset", "smoke"], "smoke")):
        args = build_parser().parse_args(argv)
        _default_preset(args)
        assert args.preset == preset, argv


def test_rank_on_a_file_that_is_not_a_checkpoint(capsys, tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    code, _, err = run(capsys, "rank", "--checkpoint", str(bad), "--quiet", "--out", str(tmp_path / "r"))
    assert code == 2 and "notes.pt is not a kshot-bench checkpoint" in err and "fix:" in err
    assert "Traceback" not in err


def test_train_in_parts_then_rank_every_snapshot(capsys, tmp_path, tiny_cifar_folder):
    run_dir, out = tmp_path / "run", tmp_path / "curve"
    base = ["train", "--preset", "smoke", "--k", "2", "--quiet", "--data-root", str(tiny_cifar_folder),
            "--out", str(run_dir), "--set", "epochs=3", "--set", "snapshot_epochs=1,2", "--set", "sampling=balanced"]
    code, out1, _ = run(capsys, *base, "--until-epoch", "1")
    assert code == 0 and "stopped after epoch 1 of 3" in out1
    code, out2, _ = run(capsys, *base, "--resume")
    assert code == 0 and "done: 3 epochs" in out2
    rank = ["rank", "--checkpoint", str(run_dir), "--preset", "smoke", "--quiet", "--data-root", str(tiny_cifar_folder),
            "--out", str(out), "--set", "final_archs=20"]
    code, text, _ = run(capsys, *rank)
    assert code == 0
    with open(out / "curve.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]  # two snapshots + the final supernet.pt
    assert rows[2]["checkpoint"].endswith("supernet.pt")
    assert [r["n_archs"] for r in rows] == ["12", "12", "20"]  # the last epoch scores final_archs
    import json

    for r in rows:
        protocol = json.loads((out / f"epoch-{int(r['epoch']):04d}" / "metrics.json").read_text())["protocol"]
        assert protocol["sampling"] == "balanced"  # the training run's, read from its checkpoint
    code, again, _ = run(capsys, *rank)
    assert code == 0 and again.count("scored earlier") == 3


def test_rank_of_a_run_without_snapshots_says_how_to_get_them(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "rank", "--checkpoint", str(tmp_path / "empty"), "--quiet")
    assert code == 2 and "holds no snapshots" in err and "snapshot_epochs" in err


def test_a_run_keeps_the_config_hash_it_started_with(capsys, tmp_path, tiny_cifar_folder):
    """A run that an older kshot_bench started (its config.json lacks fields added since, so today's hash
    rule may name it differently) keeps its recorded name: on resume, in its checkpoints, and in rank of
    its snapshots, also of snapshot files written before checkpoints carried the name."""
    import json

    from kshot_bench.config import from_dict
    from kshot_bench.rundir import load_checkpoint, recorded_hash

    run_dir, out = tmp_path / "run", tmp_path / "curve"
    base = ["train", "--preset", "smoke", "--k", "2", "--quiet", "--data-root", str(tiny_cifar_folder),
            "--out", str(run_dir), "--set", "epochs=2", "--set", "snapshot_epochs=1"]
    assert run(capsys, *base, "--until-epoch", "1")[0] == 0
    data = json.loads((run_dir / "config.json").read_text())
    del data["config"]["score_by"], data["config"]["rc_tau"]  # fields "added later", at their defaults
    data["config_hash"] = "01d0000000"
    (run_dir / "config.json").write_text(json.dumps(data))
    snap = run_dir / "snapshots" / "epoch-0001.pt"
    old = torch.load(snap, weights_only=True)
    del old["config_hash"]
    torch.save(old, snap)
    code, text, _ = run(capsys, *base, "--resume")
    assert code == 0 and "(config 01d0000000)" in text
    assert json.loads((run_dir / "config.json").read_text())["config_hash"] == "01d0000000"
    assert load_checkpoint(run_dir / "supernet.pt", torch.device("cpu"))["config_hash"] == "01d0000000"
    code, _, _ = run(capsys, "rank", "--checkpoint", str(run_dir), "--preset", "smoke", "--quiet", "--archs", "7",
                     "--data-root", str(tiny_cifar_folder), "--out", str(out))  # scoring fields keep the run's name
    assert code == 0
    for epoch in ("epoch-0001", "epoch-0002"):
        assert json.loads((out / epoch / "metrics.json").read_text())["protocol"]["config_hash"] == "01d0000000"
        assert json.loads((out / epoch / "config.json").read_text())["config_hash"] == "01d0000000"
    cfg = from_dict(data["config"])
    assert recorded_hash(cfg, run_dir) == "01d0000000" and recorded_hash(cfg.replace(seed=1), run_dir) is None
