"""Evaluating anyone's ranking (issue 28): `rank --scores FILE`, bad score files, `compare` with score files,
and the Python API (the README's example against the CLI; a loaded run scores as its rank run did)."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kshot_bench as kb
from kshot_bench.cli import main
from kshot_bench.errors import UserError
from kshot_bench.evaluate import read_scores
from kshot_bench.search_space import SPACES

ROOT = Path(__file__).resolve().parents[1]
NB201 = SPACES.get("nb201")


@pytest.fixture(scope="module")
def table():
    return kb.truth_table("nb201", "cifar10")


@pytest.mark.slow
def test_rank_scores_of_every_parameter_count_gives_the_published_tau(tmp_path, table):
    """../shared/data/README.md: parameter count ranks the 15,625 archs at tau 0.578 on CIFAR-10."""
    path = tmp_path / "params.csv"
    table[["params_M_cifar10"]].rename(columns={"params_M_cifar10": "score"}).to_csv(path)  # index,score
    out = tmp_path / "run"
    assert main(["rank", "--scores", str(path), "--space", "nb201", "--dataset", "cifar10", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert round(metrics["kendall_tau"], 3) == 0.578 and metrics["n_archs"] == 15625
    p = metrics["protocol"]
    assert p["supernet"] == "external scores" and p["scores_sha256"] and p["truth"] == "cifar10_test_200ep"
    assert metrics["null"]["band_hi"] < 0.05 and "without_no_path" in metrics
    assert {"naswot", "synflow", "params", "train_12ep"} <= set(json.loads((out / "baselines.json").read_text()))
    assert (out / "scatter.png").stat().st_size > 0 and "0.578" in (out / "summary.md").read_text()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


A, B, C = (NB201.to_str(NB201.from_key(i)) for i in (0, 1, 2))


@pytest.mark.parametrize("name, text, message", [
    ("malformed.csv", f"arch_str,score\n{A},1\n|nor_conv_3x3~0|+|bogus|,2\n{C},3\n", r"malformed.csv, line 3: .*"),
    ("unknown.csv", "index,score\n0,1\n1,2\n15625,3\n", r"unknown.csv, line 4: .*out of range"),
    ("duplicate.csv", f"arch_str,score\n{A},1\n{B},2\n{A},3\n", r"line 4 names the same arch as .*line 2"),
    ("nan.csv", f"arch_str,score\n{A},1\n{B},nan\n{C},3\n", r"nan.csv, line 3: score 'nan' is not finite"),
    ("inf.json", json.dumps({A: 1, B: 2, C: "inf"}).replace('"inf"', "Infinity"), r"entry .*: score inf is not finite"),
    ("noscore.csv", f"arch_str,accuracy\n{A},1\n{B},2\n{C},3\n", r"no 'score' column \(the header is arch_str,accuracy\)"),
    ("two.csv", f"arch_str,score\n{A},1\n{B},2\n", r"2 arch\(s\) scored; a ranking needs at least 3"),
    ("noarch.csv", "name,score\nx,1\n", r"no arch column"),
    ("list.json", "[1, 2, 3]", r"the JSON is a list, not an object"),
])
def test_bad_score_files_get_errors_naming_the_problem(tmp_path, name, text, message):
    with pytest.raises(UserError, match=message):
        read_scores(write(tmp_path / name, text), NB201)


def test_score_files_by_string_index_and_json_agree(tmp_path, table):
    rows = table.iloc[::500]
    by_str = write(tmp_path / "s.csv", "arch_str,score\n" + "".join(f"\"{a}\",{v}\n" for a, v in zip(rows.arch_str, rows.params_M_cifar10)))
    by_idx = write(tmp_path / "i.csv", "index,score\n" + "".join(f"{i},{v}\n" for i, v in zip(rows.index, rows.params_M_cifar10)))
    by_json = write(tmp_path / "j.json", json.dumps({str(i): v for i, v in zip(rows.index, rows.params_M_cifar10)}))
    taus = [kb.evaluate_ranking(p)["kendall_tau"] for p in (by_str, by_idx, by_json)]
    assert taus[0] == taus[1] == taus[2]
    # macro: 8-digit strings are arch strings, two strings of one network are one arch
    with pytest.raises(UserError, match="names the same arch"):
        read_scores(write(tmp_path / "m.json", json.dumps({"22021001": 1, "22021010": 2, "00000000": 3})), SPACES.get("macro"))
    assert read_scores(write(tmp_path / "m2.json", json.dumps({"22021001": 1, "12": 2, "00000000": 3})),
                       SPACES.get("macro")).keys[1] == 12


def test_compare_takes_score_files_on_the_runs_archs(tmp_path, capsys, table):
    sample = table.sample(60, random_state=1)
    run_file = write(tmp_path / "a.csv", "index,score\n" + "".join(f"{i},{v}\n" for i, v in zip(sample.index, sample.cifar10_val_12ep)))
    assert main(["rank", "--scores", str(run_file), "--out", str(tmp_path / "run")]) == 0
    every = tmp_path / "params.csv"  # scores of more archs than the run: compared on the run's 60
    table[["params_M_cifar10"]].rename(columns={"params_M_cifar10": "score"}).iloc[::-1].to_csv(every)
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "run"), str(every)]) == 0
    printed = capsys.readouterr().out
    assert "on 60 archs" in printed and f"B: {every} (external scores" in printed
    m = re.search(r"\| acc \| (\S+) .*\| (\S+) \[.*\| (\S+) \[", printed)
    tau_a, tau_b = (kb.evaluate_ranking(dict(zip(sample.index.tolist(), col)))["kendall_tau"]
                    for col in (sample.cifar10_val_12ep, sample.params_M_cifar10))
    assert m and float(m.group(1)) == pytest.approx(tau_a, abs=5e-4) and float(m.group(2)) == pytest.approx(tau_b, abs=5e-4)
    few = write(tmp_path / "few.csv", "index,score\n0,1\n1,2\n2,3\n")
    assert main(["compare", str(tmp_path / "run"), str(few)]) == 2
    assert "has no score for 60 of the 60 archs" in capsys.readouterr().err


def test_the_readme_api_example_gives_the_clis_numbers(tmp_path, capsys):
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    result, sample = namespace["result"], namespace["sample"]
    path = tmp_path / "sample.csv"
    pd.DataFrame({"arch_str": sample.arch_str, "score": sample.params_M_cifar10}).to_csv(path, index=False)
    assert main(["rank", "--scores", str(path), "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli["kendall_tau"] == pytest.approx(result["kendall_tau"], abs=1e-12)
    assert cli["ci95"]["kendall_tau"] == pytest.approx(list(result["ci95"]["kendall_tau"]), abs=1e-12)
    assert f"tau {cli['kendall_tau']:.3f}" in printed and "params" in printed and "flops" in printed


def test_a_loaded_run_scores_and_codes_its_archs_as_the_rank_run_did(tmp_path, tiny_cifar_folder):
    out = tmp_path / "rank"
    assert main(["rank", "--preset", "smoke", "--k", "2", "--archs", "5", "--quiet", "--data-root",
                 str(tiny_cifar_folder), "--out", str(out)]) == 0
    pred = pd.read_csv(out / "predictions.csv")
    run = kb.load_run(out)
    assert run.config.k == 2
    scored = run.score(pred["index"].tolist(), data_root=tiny_cifar_folder)
    np.testing.assert_allclose(scored["score"], pred["score"], atol=1e-3)
    np.testing.assert_allclose(scored["val_loss"], pred["val_loss"], rtol=1e-5)
    codes = run.codes(pred["arch_str"].tolist())
    np.testing.assert_allclose(codes[["lam_0", "lam_1"]].to_numpy(), pred[["lam_0", "lam_1"]].to_numpy(), atol=1e-5)
    with pytest.raises(UserError, match="holds no supernet"):
        kb.load_run(tmp_path)


def test_rank_scores_refuses_a_supernets_options(tmp_path, capsys):
    path = write(tmp_path / "s.csv", "index,score\n0,1\n1,2\n2,3\n")
    assert main(["rank", "--scores", str(path), "--k", "4", "--archs", "100", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--k, --archs belong to a supernet's rank run" in err and "fix: drop --k, --archs" in err
    assert main(["rank", "--scores", str(path), "--space", "mbv2", "--dataset", "imagenet"]) == 2
    assert "the mbv2 space has no ground truth for imagenet" in capsys.readouterr().err
