"""Scoring under torchrun: two gloo processes split the archs and give the single process's files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def run(cmd, env_extra=None, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
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
    # and a 2-process journal is continued by one process just as well
    stopped = run(torchrun(*common, "--out", str(tmp_path / "mixed")), {"KSHOT_TEST_STOP_AFTER": "1"})
    assert stopped.returncode != 0
    assert run(cli(*common, "--out", str(tmp_path / "mixed"))).returncode == 0
    assert (tmp_path / "mixed" / "predictions.csv").read_text() == expected


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside this python")
def test_training_under_torchrun_rank_is_refused_with_a_fix(tmp_path, tiny_cifar_folder):
    done = run(torchrun("rank", "--preset", "smoke", "--quiet", "--data-root", str(tiny_cifar_folder),
                        "--out", str(tmp_path / "r")))
    assert done.returncode != 0 and "scores a trained supernet" in done.stderr and "fix:" in done.stderr


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
