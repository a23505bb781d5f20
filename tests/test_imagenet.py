"""`--dataset imagenet`: the MBV2 supernet trained from an ImageNet-layout folder (streamed, seeded per
image, exact on resume whatever the worker count), scored and searched on the local validation split."""
import csv
import json

import pytest
import torch

from conftest import write_imagenet_folder
from kshot_bench.cli import main
from kshot_bench.config import from_preset
from kshot_bench.data import load_for
from kshot_bench.imagenet_data import FolderLoader
from kshot_bench.errors import UserError
from kshot_bench.train import Trainer
from kshot_bench.rundir import CHECKPOINT, load_checkpoint

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_imagenet_folder(tmp_path_factory.mktemp("imagenet"), classes=4, per_class=12, val_per_class=2)


def config(**extra):
    return from_preset("smoke", space="mbv2", dataset="imagenet", k=4,
                       **{"image_size": 32, "local_val_size": 8, "loader_workers": 0, **extra})


def test_folder_loader_is_seeded_per_image_and_shards_the_global_batch(folder):
    splits = load_for(config(), folder)
    assert len(splits.train) == 40 and len(splits) == 8
    whole = FolderLoader(splits.train, 8, seed=3, device=CPU, workers=0)
    again = FolderLoader(splits.train, 8, seed=3, device=CPU, workers=1)  # a worker process draws the same
    (x0, y0), (x1, y1) = next(iter(whole.epoch(2, start=1))), next(iter(again.epoch(2, start=1)))
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert x0.shape == (8, 3, 32, 32) and x0.dtype == torch.float32 and x0.is_contiguous(memory_format=torch.channels_last)
    halves = [next(iter(whole.epoch(2, start=1, shard=(r, 2)))) for r in range(2)]
    assert torch.equal(torch.cat([h[0] for h in halves]), x0) and torch.equal(torch.cat([h[1] for h in halves]), y0)
    other = next(iter(whole.epoch(3, start=1)))[0]
    assert not torch.equal(other, x0)  # another epoch: another order and other crops
    assert len(list(whole.epoch(0))) == 5


@pytest.mark.slow
def test_training_from_the_folder_resumes_exactly(tmp_path, folder):
    splits = load_for(config(), folder)
    cfg = config(epochs=3, checkpoint_every=2)
    straight = Trainer(cfg, tmp_path / "a", splits, CPU, progress=False)
    straight.fit()
    stopped = Trainer(cfg, tmp_path / "b", splits, CPU, progress=False)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(stop_at_step=5)  # 40 images in batches of 16: epoch 3 (K-shot phase), step 2 of 2
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT, CPU)["step_in_epoch"] == 1
    resumed = Trainer(cfg.replace(loader_workers=1), tmp_path / "b", splits, CPU, progress=False)
    assert resumed.resume()
    resumed.fit()
    for key in ("model", "codes"):
        for (n, a), (_, b) in zip(getattr(straight, key).state_dict().items(), getattr(resumed, key).state_dict().items()):
            assert torch.equal(a, b), n


@pytest.mark.slow
def test_the_pipeline_on_the_command_line_train_rank_search_retrain_evaluate_report(tmp_path, folder, capsys):
    opts = ["--set", "image_size=32", "--set", "local_val_size=8", "--set", "loader_workers=0"]
    assert main(["train", "--space", "mbv2", "--dataset", "imagenet", "--preset", "smoke", "--k", "4", *opts,
                 "--data-root", str(folder), "--out", str(tmp_path / "t"), "--quiet"]) == 0
    assert "ImageNet folder" in capsys.readouterr().out
    ckpt = tmp_path / "t" / "supernet.pt"
    assert main(["rank", "--space", "mbv2", "--dataset", "imagenet", "--checkpoint", str(ckpt), "--data-root",
                 str(folder), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert "local validation split" in metrics["protocol"]["score_set"] and "8 images" in metrics["protocol"]["score_set"]
    assert main(["search", "--space", "mbv2", "--dataset", "imagenet", "--checkpoint", str(ckpt), "--data-root",
                 str(folder), "--flops-limit", "330", "--population", "6", "--generations", "2", "--parents", "3",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    with open(tmp_path / "s" / "history.csv", newline="") as fh:
        history = list(csv.DictReader(fh))
    assert history and all(float(r["flops_M"]) <= 330 for r in history)
    # the rest of the pipeline: retrain the winner from scratch, evaluate it, report the runs
    best = json.loads((tmp_path / "s" / "result.json").read_text())["arch_str"]
    assert main(["retrain", "--preset", "smoke", "--arch", best, "--set", "loader_workers=0", "--data-root", str(folder),
                 "--out", str(tmp_path / "w"), "--quiet"]) == 0
    assert main(["evaluate", "--checkpoint", str(tmp_path / "w" / "retrained.pt"), "--data-root", str(folder),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "w" / "eval-ema.json").read_text())["arch"] == best
    assert main(["report", str(tmp_path / "r"), str(tmp_path / "s"), str(tmp_path / "w"), "--out",
                 str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| w |"))  # Table 2 shape
    top1 = json.loads((tmp_path / "w" / "eval-ema.json").read_text())["top1"]
    assert f"| {top1:.2f} |" in row and "| s (nsga2, limit 330.0 M) |" in row and "K-shot + simplex-net" in row
    assert "smoke preset" in report and (tmp_path / "report" / "runs" / "w" / "eval-ema.json").exists()
    # Tables 5/6 shape: the supernet's row carries its search and the searched arch's retrained top-1
    row = next(line for line in report.splitlines() if line.startswith("| 1 | K-shot + simplex-net + channel + r_c | 4 |"))
    assert "| r |" in row and "s (nsga2, limit 330.0 M" in row and f"| {top1:.2f} ± " in row
    assert "fig4_search_progress.png" in report and "Fig. 7 (MobileNetV2) needs two or more retrained archs" in report
    assert (tmp_path / "report" / "fig4_search_progress.png").exists() and (tmp_path / "report" / "fig6_code_histogram.png").exists()


def test_mbv2_ablation_variants_are_named_as_the_paper_rows():
    from kshot_bench.report_runs import MBV2_VARIANTS, variant_name

    cases = [(dict(k=1, code="simplex", width_search=False), "one-shot"),
             (dict(k=1, code="simplex", width_search=True, rc_weight=1.0), "one-shot + channel"),
             (dict(k=4, code="uniform", width_search=False), "fixed K-shot"),
             (dict(k=4, code="random", width_search=True), "random K-shot + channel"),
             (dict(k=4, code="simplex", width_search=False, rc_weight=1.0), "K-shot + simplex-net"),
             (dict(k=4, code="simplex", width_search=True, rc_weight=0.0), "K-shot + simplex-net + channel"),
             (dict(k=4, code="simplex", width_search=True, rc_weight=1.0), "K-shot + simplex-net + channel + r_c")]
    for protocol, name in cases:
        assert variant_name(protocol) == name and name in MBV2_VARIANTS


def test_bad_imagenet_options_say_what_and_how(tmp_path):
    with pytest.raises(UserError, match="not a dataset of the nb201 space") as err:
        from_preset("smoke", dataset="imagenet")
    assert "--space mbv2" in err.value.fix
    with pytest.raises(UserError, match="needs --data-root"):
        load_for(config(), None)
    with pytest.raises(UserError, match="no ImageNet train/"):
        load_for(config(), tmp_path)
    with pytest.raises(UserError, match="image_size"):
        config(image_size=-1)


# ----------------------------------------------------------------------------- retrain & evaluate
def test_retrain_lr_schedule_is_the_papers():
    from kshot_bench.retrain import lr_at, retrain_config

    cfg = retrain_config("imagenet", arch="")
    assert (cfg.lr, cfg.batch_size, cfg.warmup_epochs, cfg.decay_rate, cfg.decay_epochs, cfg.ema_decay) == \
        (0.128, 1024, 5.0, 0.97, 2.4, 0.9999)
    assert lr_at(cfg, 0, 100) == 0.0 and lr_at(cfg, 250, 100) == pytest.approx(0.064)  # half-way through warm-up
    assert lr_at(cfg, 500, 100) == pytest.approx(0.128 * 0.97 ** 2)  # epoch 5.0: two decays of 2.4 epochs
    assert lr_at(cfg, 4800, 100) == pytest.approx(0.128 * 0.97 ** 20)


def test_retrain_resumes_exactly_and_evaluate_reads_it(tmp_path, folder):
    from kshot_bench.retrain import FINAL, Retrainer, evaluate, retrain_config
    from kshot_bench.search_space import mbv2
    from kshot_bench.supernet.mbv2 import MBV2Network

    arch = mbv2.to_str(mbv2.sample(__import__("numpy").random.default_rng(1)))
    cfg = retrain_config("smoke", arch=arch, loader_workers=0, epochs=3)
    straight = Retrainer(cfg, tmp_path / "a", folder, CPU, progress=False)
    straight.fit()
    stopped = Retrainer(cfg, tmp_path / "b", folder, CPU, progress=False)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(stop_at_step=4)  # 48 images in batches of 16: epoch 2, step 2 of 3
    resumed = Retrainer(cfg, tmp_path / "b", folder, CPU, progress=False)
    assert resumed.resume() and (resumed.epoch, resumed.step_in_epoch) == (1, 1)
    resumed.fit()
    a, b = (torch.load(p / FINAL, weights_only=True) for p in (tmp_path / "a", tmp_path / "b"))
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert not all(torch.equal(a["model"][n], a["ema"][n]) for n in a["model"])  # the EMA is its own average
    # the EMA network's BN statistics were re-estimated after training: the mean over the recalibration
    # batches of each batch's statistics, computed here again from the same seeded batches
    assert a["ema_bn"] == "re-estimated on 48 training images after training"
    net = MBV2Network(mbv2.from_str(arch), 1000, 0.0, cfg.net_scale)
    net.load_state_dict(a["ema"])
    stem_bn = net.stem[1]
    means = []
    for x, _ in straight.loader.epoch(cfg.epochs, 0, (0, 1)):
        with torch.no_grad():
            means.append(net.stem[0](x).mean((0, 2, 3)))
    torch.testing.assert_close(stem_bn.running_mean, torch.stack(means).mean(0), rtol=1e-5, atol=1e-6)
    result = evaluate(tmp_path / "a" / FINAL, folder, CPU, progress=False, workers=0)
    assert result["images"] == 8 and 0 <= result["top1"] <= result["top5"] <= 100 and result["arch"] == arch
    assert result["bn_statistics"].startswith("re-estimated on 48")
    with pytest.raises(UserError, match="not a retrained network"):
        evaluate(tmp_path / "a" / "log.csv", folder, CPU)


def test_retrain_and_evaluate_on_the_command_line(tmp_path, folder, capsys):
    from kshot_bench.search_space import mbv2

    arch = mbv2.to_str(mbv2.smallest())
    assert main(["retrain", "--preset", "smoke", "--arch", arch, "--set", "loader_workers=0", "--data-root", str(folder),
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert main(["evaluate", "--checkpoint", str(tmp_path / "r" / "retrained.pt"), "--data-root", str(folder),
                 "--quiet"]) == 0
    assert "top-1" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "eval-ema.json").read_text())["images"] == 8
    assert main(["retrain", "--preset", "smoke", "--arch", "k3e3-nope", "--data-root", str(folder),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "error:" in capsys.readouterr().err
