"""torchrun: two gloo processes train what one process trains (micro-batches as their BN parts), split the
archs for scoring and give the single process's files; interrupted runs resume."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def run(cmd, env_extra=None, timeout=600):
    # torchrun leaves its torchelastic_* folder in TMPDIR: each run gets its own TMPDIR, removed afterwards
    with tempfile.TemporaryDirectory(prefix="kshot-test-run-") as tmp:
        env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=tmp, **(env_extra or {}))
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def cli(*argv):
    return [sys.executable, "-m", "kshot_bench.cli", *argv]


def torchrun(*argv, nproc=2):
    return [str(TORCHRUN), "--standalone", "--nproc_per_node", str(nproc), "-m", "kshot_bench.cli", *argv]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_cifar_folder):
    out = tmp_path_factory.mktemp("dist") / "train"
    done = run(cli("train", "--preset", "smoke", "--k", "2", "--quiet", "--data-root", str(tiny_cifar_folder),
                   "--out", str(out)))
    assert done.returncode == 0, done.stderr
    return out / "supernet.pt"


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this python")
def test_two_processes_give_the_single_process_predictions_and_resume(tmp_path, checkpoint, tiny_cifar_folder):
    common = ["rank", "--checkpoint", str(checkpoint), "--preset", "smoke", "--archs", "9", "--quiet",
              "--data-root", str(tiny_cifar_folder)]
    one = run(cli(*common, "--out", str(tmp_path / "one")))
    assert one.returncode == 0, one.stderr
    two = run(torchrun(*common, "--out", str(tmp_path / "two")))
    assert two.returncode == 0, two.stderr
    expected = (tmp_path / "one" / "predictions.csv").read_text()
    assert (tmp_path / "two" / "predictions.csv").read_text() == expected
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["protocol"]["world_size"] == 2
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["protocol"]["world_size"] == 1
    assert not list((tmp_path / "two").glob("predictions.partial*"))

    # interrupted after 2 archs on each rank, then run again: the same file
    stopped = run(torchrun(*common, "--out", str(tmp_path / "resumed")), {"KSHOT_TEST_STOP_AFTER": "2"})
    assert stopped.returncode != 0 and "interrupted" in stopped.stderr
    journals = sorted(p.name for p in (tmp_path / "resumed").glob("predictions.partial*"))
    assert journals == ["predictions.partial.r0.csv", "predictions.partial.r1.csv"]
    assert not (tmp_path / "resumed" / "predictions.csv").exists()
    again = run(torchrun(*common, "--out", str(tmp_path / "resumed")))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "resumed" / "predictions.csv").read_text() == expected
    # the time and rate are of the archs this call scored, not of those read back from the journals
    protocol = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["protocol"]
    assert protocol["archs_scored"] == 5 and protocol["archs_per_s"] == pytest.approx(5 / protocol["score_s"])
    assert "for the last 5 of 9 archs" in (tmp_path / "resumed" / "summary.md").read_text()
    whole = json.loads((tmp_path / "one" / "metrics.json").read_text())["protocol"]
    assert whole["archs_scored"] == 9 and "for the last" not in (tmp_path / "one" / "summary.md").read_text()
    # and a 2-process journal is continued by one process just as well
    stopped = run(torchrun(*common, "--out", str(tmp_path / "mixed")), {"KSHOT_TEST_STOP_AFTER": "1"})
    assert stopped.returncode != 0
    assert run(cli(*common, "--out", str(tmp_path / "mixed"))).returncode == 0
    assert (tmp_path / "mixed" / "predictions.csv").read_text() == expected


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this python")
def test_every_snapshot_of_a_run_is_scored_by_two_processes_as_by_one(tmp_path, tiny_cifar_folder):
    """`rank --checkpoint RUN_DIR` under torchrun: the processes split each snapshot's archs; the curve and every
    snapshot's predictions are the single process's, and a curve begun by one process is finished by two."""
    train = run(cli("train", "--preset", "smoke", "--k", "2", "--quiet", "--data-root", str(tiny_cifar_folder),
                    "--out", str(tmp_path / "train"), "--set", "snapshot_epochs=1"))
    assert train.returncode == 0, train.stderr
    common = ["rank", "--checkpoint", str(tmp_path / "train"), "--preset", "smoke", "--quiet", "--data-root",
              str(tiny_cifar_folder)]
    one = run(cli(*common, "--out", str(tmp_path / "one")))
    assert one.returncode == 0, one.stderr
    two = run(torchrun(*common, "--out", str(tmp_path / "two")))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("rank: every snapshot") == 1 and "(2 processes, gloo)" in two.stdout  # said once
    assert (tmp_path / "two" / "curve.csv").read_text() == (tmp_path / "one" / "curve.csv").read_text()
    epochs = sorted(p.name for p in (tmp_path / "one").glob("epoch-*"))
    assert epochs == ["epoch-0001", "epoch-0002"]
    for e in epochs:
        assert (tmp_path / "two" / e / "predictions.csv").read_text() == (tmp_path / "one" / e / "predictions.csv").read_text()
        assert json.loads((tmp_path / "two" / e / "metrics.json").read_text())["protocol"]["world_size"] == 2
    # one process stopped in the first snapshot; two processes finish the curve from its journal
    stopped = run(cli(*common, "--out", str(tmp_path / "mixed")), {"KSHOT_TEST_STOP_AFTER": "3"})
    assert stopped.returncode != 0 and "interrupted" in stopped.stderr
    assert run(torchrun(*common, "--out", str(tmp_path / "mixed"))).returncode == 0
    assert (tmp_path / "mixed" / "curve.csv").read_text() == (tmp_path / "one" / "curve.csv").read_text()


def weights(path: Path):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {**{f"model.{k}": v for k, v in state["model"].items()}, **{f"codes.{k}": v for k, v in state["codes"].items()}}


def assert_same_weights(a: Path, b: Path, exact: bool):
    import torch

    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        if exact:
            assert torch.equal(wa[key], wb[key]), key
        else:
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=key)


TRAIN_CASES = {  # smoke supernets with simplex-net steps in their second epoch (K=4)
    "mbv2": ["--space", "mbv2", "--preset", "smoke", "--k", "4"],
    "nb201": ["--preset", "smoke", "--k", "4", "--set", "batch_size=16", "--set", "simplex_paths=4"],
    # weights off the path get weight decay and momentum once used (issue 44): the same on every process
    "nb201-decay": ["--preset", "smoke", "--k", "4", "--set", "batch_size=16", "--set", "simplex_paths=4",
                    "--set", "offpath_update=decay"],
}


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this python")
@pytest.mark.parametrize("space", sorted(TRAIN_CASES))
def test_two_processes_train_what_one_process_trains_with_two_micro_batches(tmp_path, tiny_cifar_folder, space):
    """2 gloo processes, each half of every batch (BN on its own 8 images), gradients of the supernet and
    the simplex-net averaged == one process whose batch is two micro-batches of 8 (BN on each)."""
    common = ["train", *TRAIN_CASES[space], "--quiet", "--data-root", str(tiny_cifar_folder)]
    one = run(cli(*common, "--set", "micro_batches=2", "--out", str(tmp_path / "one")))
    assert one.returncode == 0, one.stderr
    two = run(torchrun(*common, "--out", str(tmp_path / "two")))
    assert two.returncode == 0, two.stderr
    assert "2 processes, gloo" in two.stdout
    assert_same_weights(tmp_path / "one" / "supernet.pt", tmp_path / "two" / "supernet.pt", exact=False)
    log_one, log_two = (csv_rows(tmp_path / d / "log.csv") for d in ("one", "two"))
    assert [r["phase"] for r in log_two] == ["warmup", "kshot"] and log_two[1]["simplex_loss"] != ""
    for r1, r2 in zip(log_one, log_two):  # the logged epoch covers both processes' images
        assert r1["images"] == r2["images"]
        assert float(r1["train_loss"]) == pytest.approx(float(r2["train_loss"]), rel=1e-4)
        assert float(r1["simplex_loss"] or 0) == pytest.approx(float(r2["simplex_loss"] or 0), rel=1e-4)
    # without micro-batches one process computes something else (BN over 16 images): the test can fail
    plain = run(cli(*common, "--out", str(tmp_path / "plain")))
    assert plain.returncode == 0, plain.stderr
    with pytest.raises(AssertionError):
        assert_same_weights(tmp_path / "plain" / "supernet.pt", tmp_path / "two" / "supernet.pt", exact=False)
    if space != "mbv2":
        return
    # interrupted mid-epoch under torchrun, resumed under torchrun: the uninterrupted run, bitwise
    stopped = run(torchrun(*common, "--out", str(tmp_path / "resumed")), {"KSHOT_TEST_STOP_AT_STEP": "4"})
    assert stopped.returncode != 0 and "interrupted at epoch 2" in stopped.stderr
    assert not (tmp_path / "resumed" / "supernet.pt").exists()
    again = run(torchrun(*common, "--resume", "--out", str(tmp_path / "resumed")))
    assert again.returncode == 0, again.stderr
    assert "resumed at epoch 2 step 0" in again.stdout  # the checkpoint at the end of epoch 1 (3 steps)
    assert_same_weights(tmp_path / "resumed" / "supernet.pt", tmp_path / "two" / "supernet.pt", exact=True)
    assert csv_rows(tmp_path / "resumed" / "log.csv")[1]["train_loss"] == log_two[1]["train_loss"]
    # one process continues a 2-process run only with the same BN parts: micro_batches=2
    stopped = run(torchrun(*common, "--out", str(tmp_path / "mixed")), {"KSHOT_TEST_STOP_AT_STEP": "4"})
    assert stopped.returncode != 0
    refused = run(cli(*common, "--resume", "--out", str(tmp_path / "mixed")))
    assert refused.returncode != 0 and "batch norm over 2 part(s)" in refused.stderr and "fix:" in refused.stderr
    mixed = run(cli(*common, "--resume", "--set", "micro_batches=2", "--out", str(tmp_path / "mixed")))
    assert mixed.returncode == 0, mixed.stderr
    assert_same_weights(tmp_path / "mixed" / "supernet.pt", tmp_path / "two" / "supernet.pt", exact=False)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this python")
def test_rank_trains_and_scores_under_torchrun(tmp_path, tiny_cifar_folder):
    done = run(torchrun("rank", "--preset", "smoke", "--quiet", "--data-root", str(tiny_cifar_folder),
                        "--out", str(tmp_path / "r")))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["protocol"]["world_size"] == 2
    assert json.loads((tmp_path / "r" / "train" / "config.json").read_text())["world_size"] == 2
    assert len(csv_rows(tmp_path / "r" / "predictions.csv")) == 12


def csv_rows(path: Path):
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this python")
def test_search_scoring_split_across_two_processes_takes_the_same_path(tmp_path, checkpoint, tiny_cifar_folder):
    common = ["search", "--checkpoint", str(checkpoint), "--population", "6", "--generations", "2", "--parents", "3",
              "--score-images", "32", "--quiet", "--data-root", str(tiny_cifar_folder)]
    one = run(cli(*common, "--out", str(tmp_path / "one")))
    assert one.returncode == 0, one.stderr
    two = run(torchrun(*common, "--out", str(tmp_path / "two")))
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "two" / "history.csv").read_text() == (tmp_path / "one" / "history.csv").read_text()
    assert json.loads((tmp_path / "two" / "result.json").read_text())["world_size"] == 2
    assert not list((tmp_path / "two").glob("scores.partial*"))


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this python")
def test_retrain_runs_under_torchrun_and_resumes(tmp_path):
    from conftest import write_imagenet_folder

    folder = write_imagenet_folder(tmp_path / "imagenet", classes=4, per_class=12, val_per_class=2)
    common = ["retrain", "--preset", "smoke", "--arch", "id-" * 20 + "id", "--set", "loader_workers=0",
              "--data-root", str(folder), "--quiet"]
    straight = run(torchrun(*common, "--out", str(tmp_path / "a")))
    assert straight.returncode == 0, straight.stderr
    assert json.loads((tmp_path / "a" / "config.json").read_text())["world_size"] == 2
    stopped = run(torchrun(*common, "--out", str(tmp_path / "b")), {"KSHOT_TEST_STOP_AT_STEP": "4"})
    assert stopped.returncode != 0 and "interrupted" in stopped.stderr
    again = run(torchrun(*common, "--resume", "--out", str(tmp_path / "b")))
    assert again.returncode == 0, again.stderr
    assert_same_weights_retrained(tmp_path / "a" / "retrained.pt", tmp_path / "b" / "retrained.pt")
    refused = run(cli(*common, "--resume", "--out", str(tmp_path / "b")))
    assert refused.returncode == 0 and "already finished" in refused.stdout
    # evaluate under torchrun: the processes share val/ and the counts add up to one process's
    final = str(tmp_path / "a" / "retrained.pt")
    for launch in (cli, torchrun):
        done = run(launch("evaluate", "--checkpoint", final, "--data-root", str(folder), "--weights", "raw", "--quiet"))
        assert done.returncode == 0, done.stderr
        result = json.loads((tmp_path / "a" / "eval-raw.json").read_text())
        if launch is cli:
            one = result
    assert result["world_size"] == 2 and one["world_size"] == 1 and result["images"] == one["images"] == 8
    assert (result["top1"], result["top5"]) == (one["top1"], one["top5"])


def assert_same_weights_retrained(a: Path, b: Path):
    import torch

    sa, sb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    for key in ("model", "ema"):
        for name in sa[key]:
            assert torch.equal(sa[key][name], sb[key][name]), (key, name)
