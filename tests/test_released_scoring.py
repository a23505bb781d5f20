"""`rank --score-protocol released` (issue 44): every arch scored on the CIFAR-10 test set, batches of 512, batch
statistics, as the released NB201 one-shot rankings were; `score_part=test` recorded in the protocol."""
import json

import pytest
import torch

from kshot_bench.cli import main
from kshot_bench.config import from_preset
from kshot_bench.data import cifar10_test_set, load_dataset
from kshot_bench.datasets import DATASETS
from kshot_bench.errors import UserError
from kshot_bench.scoring import scoring_batches, with_test_images


def test_test_scoring_scores_on_the_test_images(tiny_cifar_folder):
    splits = load_dataset("cifar10", tiny_cifar_folder, download=False)
    scored, info = with_test_images(splits, DATASETS.get("cifar10"), tiny_cifar_folder)
    x, y = cifar10_test_set(tiny_cifar_folder)
    assert torch.equal(scored.score_x, x) and torch.equal(scored.score_y, y)
    assert torch.equal(scored.train_x, splits.train_x)  # training is untouched
    assert len(x) == 20 and len(splits.score_x) != 20
    desc = scoring_batches(scored, info, 0, 512, torch.device("cpu")).description
    assert desc.startswith("20 images of the CIFAR-10 test set") and "batches of 512" in desc


def test_rank_with_the_released_protocol(tmp_path, tiny_cifar_folder):
    train = tmp_path / "train"
    assert main(["train", "--preset", "smoke", "--k", "1", "--quiet", "--data-root", str(tiny_cifar_folder),
                 "--out", str(train)]) == 0
    common = ["rank", "--checkpoint", str(train / "supernet.pt"), "--quiet", "--data-root", str(tiny_cifar_folder)]
    assert main(common + ["--score-protocol", "released", "--out", str(tmp_path / "released")]) == 0
    p = json.loads((tmp_path / "released" / "metrics.json").read_text())["protocol"]
    assert p["score_part"] == "test" and p["n_score_images"] == 20
    assert "batches of 512" in p["score_set"] and "test set" in p["score_set"]
    assert "CIFAR-10 test set" in (tmp_path / "released" / "summary.md").read_text()
    assert main(common + ["--score-protocol", "released", "--score-images", "10", "--out", str(tmp_path / "ten")]) == 0
    assert json.loads((tmp_path / "ten" / "metrics.json").read_text())["protocol"]["n_score_images"] == 10
    assert main(common + ["--out", str(tmp_path / "valid")]) == 0
    assert json.loads((tmp_path / "valid" / "metrics.json").read_text())["protocol"]["score_part"] == "valid"


def test_the_released_protocol_needs_cifar10_and_its_test_set(tmp_path, capsys):
    with pytest.raises(UserError, match="score_part=test"):
        from_preset("smoke", dataset="cifar100", score_part="test")
    with pytest.raises(UserError, match="unknown score_part"):
        from_preset("smoke", score_part="train")
    # the embedded sample has no test set
    assert main(["rank", "--preset", "smoke", "--quiet", "--score-protocol", "released",
                 "--out", str(tmp_path / "r")]) != 0
    assert "embedded sample has none" in capsys.readouterr().err
    assert main(["rank", "--scores", str(tmp_path / "x.csv"), "--score-protocol", "released"]) != 0
    assert "--score-protocol" in capsys.readouterr().err
