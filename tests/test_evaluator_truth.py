"""The evaluator never gives a false verdict and no command loses a result (issue 46): undefined figures, ties and
line order, results folders of other jobs, flags that do not apply, dataset names, help that tells the truth."""
import json
import random

import numpy as np
import pytest

from kshot_bench import metrics
from kshot_bench.cli import main
from kshot_bench.evaluate import evaluate_ranking
from kshot_bench.search_space import nb201


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_scores(path, scores, header="index,score"):
    path.write_text(header + "\n" + "".join(f"{k},{s}\n" for k, s in scores))
    return path


@pytest.fixture
def constant_folder(tmp_path):
    """Every image the same (all black): batch-statistics BN maps identical images to zero features, so every arch
    outputs the shared classifier's bias and predicts the same class: a supernet whose scores are all equal."""
    from PIL import Image

    for part, n in (("train", 20), ("test", 2)):
        for c in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]:
            d = tmp_path / "const" / part / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(d / f"{i:04d}.png")
    return tmp_path / "const"


def test_constant_scores_are_undefined_and_claim_nothing(tmp_path, capsys):
    f = write_scores(tmp_path / "flat.csv", [(k, 1.0) for k in range(0, 600, 7)])
    code, out, _ = run(capsys, "rank", "--scores", str(f), "--out", str(tmp_path / "r"))
    assert code == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["kendall_tau"] is None and m["undefined"]["kendall_tau"] == "all 86 scores are equal"
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "**undefined**: all 86 scores are equal" in summary
    assert "better" not in summary.split("|")[0] and "Baselines ranking" not in summary
    assert "Ties: 86 of 86 archs" in summary
    assert "undefined" in out and "nan" not in out
    # compare: the other run is defined, this one is not: no difference claimed
    g = write_scores(tmp_path / "ok.csv", [(k, float(k % 13)) for k in range(0, 600, 7)])
    assert main(["rank", "--scores", str(g), "--out", str(tmp_path / "g")]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "compare", str(tmp_path / "r"), str(tmp_path / "g"))
    assert code == 0 and "undefined" in out and "no difference is claimed" in out and "nan" not in out
    assert "| loss |" not in out  # score files have no loss: no row of n/a


def test_a_constant_score_supernet_rank_gives_undefined(tmp_path, capsys, constant_folder):
    code, out, _ = run(capsys, "rank", "--preset", "smoke", "--k", "2", "--quiet", "--data-root", str(constant_folder),
                       "--out", str(tmp_path / "r"))
    assert code == 0
    lines = (tmp_path / "r" / "predictions.csv").read_text().splitlines()[1:]
    assert len({line.split(",")[2] for line in lines}) == 1  # every arch the same accuracy
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "**undefined**: all 12 scores are equal" in summary and "It ranks better" not in summary
    from kshot_bench.report import build_report

    report = build_report([tmp_path / "r"], tmp_path / "rep", command="test")
    text = report.read_text()
    assert "nan" not in text.lower().replace("nanoseconds", "")


def test_undefined_baselines_are_not_compared():
    from kshot_bench.results import headline

    m = metrics.ranking_metrics(np.arange(10.0), np.arange(10.0))
    flat = metrics.all_metrics(np.ones(10), np.arange(10.0))
    text = headline("x", m, {"flat": flat, "good": m}, "t")
    assert "Level with: good" in text and "Undefined on these archs (not compared): flat" in text
    assert "ranks better" not in text


def test_ties_give_the_same_metrics_in_any_line_order(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.choice(15625, 300, replace=False)
    scores = [(int(k), float(rng.integers(0, 5))) for k in keys]  # five values: many ties
    results = []
    for seed in range(3):
        lines = list(scores)
        random.Random(seed).shuffle(lines)
        f = write_scores(tmp_path / f"s{seed}.csv", lines)
        m = evaluate_ranking(f, "nb201", "cifar10")
        results.append(json.dumps({k: m[k] for k in ("kendall_tau", "split_tau", "top_tau", "precision_at_k",
                                                      "regret", "ci95", "ties")}, sort_keys=True, default=str))
    assert results[0] == results[1] == results[2]
    assert json.loads(results[0])["ties"]["distinct_scores"] == 5


def test_p_at_k_only_below_the_number_of_archs():
    m = metrics.all_metrics(np.arange(50.0), np.arange(50.0))
    assert "50" not in m["precision_at_k"] and "20" in m["precision_at_k"]


def test_a_different_job_never_overwrites_a_results_folder(tmp_path, capsys):
    a = write_scores(tmp_path / "a.csv", [(k, float(k % 11)) for k in range(0, 900, 9)])
    b = write_scores(tmp_path / "b.csv", [(k, float(k % 7)) for k in range(0, 900, 9)])
    out = tmp_path / "D"
    assert main(["rank", "--scores", str(a), "--out", str(out)]) == 0
    first = (out / "metrics.json").read_text()
    code, _, err = run(capsys, "rank", "--scores", str(b), "--out", str(out))
    assert code == 2 and "another job" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == first  # left intact
    assert main(["rank", "--scores", str(a), "--out", str(out)]) == 0  # the same job: fine
    assert main(["rank", "--scores", str(a), "--lower-is-better", "--out", str(out)]) == 2  # another reading of it
    assert main(["rank", "--scores", str(b), "--out", str(out), "--overwrite"]) == 0
    assert (out / "metrics.json").read_text() != first
    # a folder of someone else's files is never emptied
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    capsys.readouterr()
    code, _, err = run(capsys, "rank", "--scores", str(a), "--out", str(other), "--overwrite")
    assert code == 2 and "never emptied" in err and (other / "notes.txt").read_text() == "keep"


def test_supernet_rank_jobs_resume_but_do_not_mix(tmp_path, capsys, tiny_cifar_folder, monkeypatch):
    common = ["rank", "--preset", "smoke", "--quiet", "--data-root", str(tiny_cifar_folder), "--out", str(tmp_path / "D")]
    monkeypatch.setenv("KSHOT_TEST_STOP_AFTER", "3")
    assert main(common) == 130  # interrupted while scoring
    monkeypatch.delenv("KSHOT_TEST_STOP_AFTER")
    assert main(common) == 0  # the same command continues it
    first = (tmp_path / "D" / "predictions.csv").read_text()
    capsys.readouterr()
    code, _, err = run(capsys, *common, "--score-images", "32")
    assert code == 2 and "score_images: 64 there, 32 here" in err
    assert (tmp_path / "D" / "predictions.csv").read_text() == first
    f = write_scores(tmp_path / "s.csv", [(k, float(k)) for k in range(20)])
    code, _, err = run(capsys, "rank", "--scores", str(f), "--out", str(tmp_path / "D"))
    assert code == 2 and "supernet's ranking" in err


def test_scores_refuse_flags_that_do_not_apply_and_lower_is_better_flips_tau(tmp_path, capsys):
    f = write_scores(tmp_path / "s.csv", [(k, float((k * 37) % 101)) for k in range(0, 1000, 5)])
    for extra in (["--preset", "nope"], ["--device", "cuda"], ["--offline"], ["--score", "loss"], ["--k", "2"]):
        code, _, err = run(capsys, "rank", "--scores", str(f), *extra, "--out", str(tmp_path / "x"))
        assert code == 2 and extra[0] in err and "fix:" in err, extra
    up = evaluate_ranking(f, "nb201", "cifar10")
    down = evaluate_ranking(f, "nb201", "cifar10", lower_is_better=True)
    assert down["kendall_tau"] == pytest.approx(-up["kendall_tau"])
    assert main(["rank", "--scores", str(f), "--lower-is-better", "--out", str(tmp_path / "low")]) == 0
    assert json.loads((tmp_path / "low" / "metrics.json").read_text())["protocol"]["lower_is_better"] is True
    header = (tmp_path / "low" / "predictions.csv").read_text().splitlines()[0]
    assert header == "index,arch_str,score,given_score,truth"


def test_dataset_names(tmp_path, capsys):
    f = write_scores(tmp_path / "s.csv", [(k, float(k % 17)) for k in range(0, 1000, 5)])
    code, out, _ = run(capsys, "rank", "--scores", str(f), "--dataset", "imagenet16", "--out", str(tmp_path / "a"))
    assert code == 0 and "ImageNet16-120" in out
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["protocol"]["dataset"] == "ImageNet16-120"
    code, _, err = run(capsys, "rank", "--dataset", "imagenet", "--preset", "smoke", "--out", str(tmp_path / "b"))
    assert code == 2 and "not a dataset of the nb201 space" in err and "fix:" in err and "ImageNet16-120" in err
    code, _, err = run(capsys, "rank", "--dataset", "mnist", "--out", str(tmp_path / "c"))
    assert code == 2 and "unknown dataset 'mnist'" in err and "fix:" in err
    from kshot_bench.api import truth_table
    from kshot_bench.config import from_preset

    assert from_preset("smoke", dataset="IMAGENET16").dataset == "ImageNet16-120"
    assert len(truth_table("nb201", "imagenet16")) == 15625


def test_help_and_version_tell_the_truth(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "rank" in out and "presets" in out and "compare" in out  # bare: the commands
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("kshot-bench 0.")
    with pytest.raises(SystemExit):
        main(["rank", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "demo: 3 epochs, 50 archs on all scoring images of the embedded sample" in text
    assert "cpu: 12 epochs, 250 archs on 1,000 scoring images" in text
    code, out, _ = run(capsys, "presets", "--space", "macro")
    assert code == 0 and "cpu:" in out and "epochs=20" in out and "smoke:" in out
    code, out, _ = run(capsys, "presets", "--preset", "narrow")
    assert code == 0 and "channels = 5" in out and "sampling = balanced" in out


def test_set_with_a_wrong_type_names_the_type(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--set", "epochs=abc", "--out", str(tmp_path / "t"))
    assert code == 2 and "takes an integer" in err


def test_a_loaded_run_prints_in_one_line(tmp_path, tiny_cifar_folder):
    from kshot_bench.api import load_run

    assert main(["train", "--preset", "smoke", "--k", "2", "--quiet", "--data-root", str(tiny_cifar_folder),
                 "--out", str(tmp_path / "t")]) == 0
    text = repr(load_run(tmp_path / "t"))
    assert "\n" not in text and "K=2" in text and "nb201 on cifar10" in text and len(text) < 300
