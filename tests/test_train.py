import csv

import pytest
import torch

from kshot_bench.config import from_preset
from kshot_bench.data import load_dataset
from kshot_bench.errors import UserError
from kshot_bench.train import Trainer
from kshot_bench.rundir import CHECKPOINT, FINAL, LOG, check_same_config, load_checkpoint


@pytest.fixture(scope="module")
def splits(tiny_cifar_folder):
    return load_dataset("cifar10", tiny_cifar_folder, download=False)


def smoke(**changes):
    # 100 training images, batch 16 -> 6 steps per epoch; epoch 2 is the simplex phase
    base = dict(epochs=3, warmup_epochs=1, batch_size=16, simplex_paths=4, simplex_interval=2, checkpoint_every=4)
    base.update(changes)
    return from_preset("smoke", **base)


def rows(run_dir):
    with open(run_dir / LOG, newline="") as fh:
        return list(csv.DictReader(fh))


def test_training_writes_log_and_weights(tmp_path, splits):
    cfg = smoke()
    trainer = Trainer(cfg, tmp_path, splits, torch.device("cpu"), progress=False)
    trainer.fit()
    log = rows(tmp_path)
    assert [r["epoch"] for r in log] == ["1", "2", "3"]
    assert [r["phase"] for r in log] == ["warmup", "kshot", "kshot"]
    assert log[0]["simplex_loss"] == "" and float(log[1]["simplex_loss"]) > 0
    assert float(log[0]["code_entropy"]) == pytest.approx(1.0)
    final = load_checkpoint(tmp_path / FINAL, torch.device("cpu"))
    assert final["config"]["k"] == 4 and final["epochs"] == 3
    # the simplex-net moved away from its uniform start
    codes = trainer.codes([(3, 3, 3, 3, 3, 3), (1, 1, 1, 1, 1, 1)])
    assert not torch.allclose(codes, torch.full_like(codes, 0.25))


def test_identical_init_with_simplex_codes_warns(tmp_path, splits):
    with pytest.warns(UserWarning, match="simplex-net gets no gradient"):
        Trainer(smoke(kshot_init="identical"), tmp_path, splits, torch.device("cpu"), progress=False)


@pytest.mark.parametrize("code, k, changes", [("simplex", 3, {}), ("random", 2, {}), ("uniform", 2, {}), ("simplex", 1, {}),
                                              ("simplex", 2, {"simplex_threads": 0}),  # batched
                                              ("simplex", 2, {"simplex_threads": 0, "simplex_batched": False}),
                                              ("simplex", 2, {"simplex_threads": 3}),
                                              ("simplex", 2, {"simplex_paths": 3, "simplex_threads": 0}),  # uneven
                                              ("simplex", 2, {"sampling": "balanced"}),
                                              ("simplex", 1, {"sampling": "balanced"}),
                                              ("simplex", 2, {"simplex_step": "joint", "simplex_interval": 1}),
                                              ("simplex", 2, {"simplex_step": "joint", "simplex_interval": 1,
                                                              "kshot_copies": "normalised"}),  # joint-shared
                                              ("simplex", 2, {"warmup_code": "dirichlet", "simplex_init": 0.1})])
def test_resume_mid_epoch_is_exact(tmp_path, splits, code, k, changes):
    cfg = smoke(code=code, k=k, **changes)
    straight = Trainer(cfg, tmp_path / "straight", splits, torch.device("cpu"), progress=False)
    straight.fit()

    stopped = Trainer(cfg, tmp_path / "stopped", splits, torch.device("cpu"), progress=False)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(stop_at_step=9)  # epoch 2, step 3 of 6: inside the simplex phase
    state = load_checkpoint(tmp_path / "stopped" / CHECKPOINT, torch.device("cpu"))
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)

    resumed = Trainer(cfg, tmp_path / "stopped", splits, torch.device("cpu"), progress=False)
    assert resumed.resume()
    resumed.fit()
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(straight.codes.state_dict().items(), resumed.codes.state_dict().items()):
        assert torch.equal(a, b), name
    log_a, log_b = rows(tmp_path / "straight"), rows(tmp_path / "stopped")
    assert [r["train_loss"] for r in log_a] == [r["train_loss"] for r in log_b]


def test_runs_record_the_machines_they_trained_on(tmp_path, splits, monkeypatch):
    """Float rounding differs between processors, torch versions and thread counts, and so does a trained
    supernet, so a run keeps the machines it trained on, in order: a resume elsewhere adds one, a resume on the
    same machine does not; a checkpoint from before runs kept them says so."""
    import kshot_bench.train as train_module
    from kshot_bench.rundir import MACHINES_NOT_RECORDED, atomic_save, machine_info, machine_label

    cpu = torch.device("cpu")
    cfg = smoke()
    here = machine_label(machine_info(cpu))
    for stop in (4, 8):  # started, then resumed on the same machine
        t = Trainer(cfg, tmp_path, splits, cpu, progress=False)
        t.resume()
        with pytest.raises(KeyboardInterrupt):
            t.fit(stop_at_step=stop)
    assert t.machines == [here]
    other = {**machine_info(cpu), "cpu_model": "Another CPU"}
    monkeypatch.setattr(train_module, "machine_info", lambda device: other)
    t = Trainer(cfg, tmp_path, splits, cpu, progress=False)
    assert t.resume()
    t.fit()
    assert load_checkpoint(tmp_path / FINAL, cpu)["train_machines"] == [here, machine_label(other)]
    assert "Another CPU, torch" in machine_label(other)
    state = load_checkpoint(tmp_path / CHECKPOINT, cpu)
    del state["machines"]
    atomic_save(state, tmp_path / CHECKPOINT)
    t = Trainer(cfg, tmp_path, splits, cpu, progress=False)
    assert t.resume() and t.machines == [MACHINES_NOT_RECORDED, machine_label(other)]


def test_balanced_training_draws_every_path_from_the_enn_groups(tmp_path, splits):
    from kshot_bench.search_space import nb201

    trainer = Trainer(smoke(sampling="balanced"), tmp_path, splits, torch.device("cpu"), progress=False)
    paths = [trainer.path(step) for step in range(600)]
    assert all(nb201.enn(a) is not None for a in paths)
    # a third of the steps for the 1,000 ENN-3 archs (6% under uniform sampling)
    assert 150 < sum(nb201.enn(a) == 3 for a in paths) < 250
    uniform = Trainer(smoke(), tmp_path / "u", splits, torch.device("cpu"), progress=False)
    assert sum(nb201.enn(uniform.path(step)) == 3 for step in range(600)) < 80


def test_checkpoint_from_another_config_is_refused(tmp_path, splits):
    cfg = smoke(epochs=1, warmup_epochs=1)
    Trainer(cfg, tmp_path, splits, torch.device("cpu"), progress=False).fit()
    other = cfg.replace(k=2)
    with pytest.raises(UserError, match="different config.*k: checkpoint 4 vs now 2"):
        Trainer(other, tmp_path, splits, torch.device("cpu"), progress=False).resume()
    # scoring fields may differ
    check_same_config(cfg.replace(archs="all", score_images=10), cfg.to_dict(), tmp_path)


def test_unreadable_checkpoint(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(UserError, match="x.pt is not a kshot-bench checkpoint"):
        load_checkpoint(bad, torch.device("cpu"))
    other = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, other)  # a torch file, but not ours
    with pytest.raises(UserError, match="weights.pt is not a kshot-bench checkpoint"):
        load_checkpoint(other, torch.device("cpu"))
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt", torch.device("cpu"))


def test_too_few_images_for_a_batch(splits, tmp_path):
    with pytest.raises(UserError, match="fewer than one batch"):
        Trainer(smoke(batch_size=64, train_subset=40), tmp_path, splits, torch.device("cpu"), progress=False)


def test_snapshots_and_training_in_parts_are_exact(tmp_path, splits):
    from kshot_bench.rundir import list_snapshots

    cfg = smoke(epochs=3, snapshot_epochs="1,3")
    straight = Trainer(cfg, tmp_path / "straight", splits, torch.device("cpu"), progress=False)
    straight.fit()
    assert [p.name for p in list_snapshots(tmp_path / "straight")] == ["epoch-0001.pt", "epoch-0003.pt"]

    parts = Trainer(cfg, tmp_path / "parts", splits, torch.device("cpu"), progress=False)
    parts.fit(until_epoch=1)
    assert not (tmp_path / "parts" / FINAL).exists() and parts.epoch == 1
    with pytest.raises(KeyboardInterrupt):
        again = Trainer(cfg, tmp_path / "parts", splits, torch.device("cpu"), progress=False)
        again.resume()
        again.fit(stop_at_step=8)  # interrupted inside epoch 2
    last = Trainer(cfg, tmp_path / "parts", splits, torch.device("cpu"), progress=False)
    assert last.resume()
    last.fit()
    for name in ("epoch-0001.pt", "epoch-0003.pt"):
        a = load_checkpoint(tmp_path / "straight" / "snapshots" / name, torch.device("cpu"))
        b = load_checkpoint(tmp_path / "parts" / "snapshots" / name, torch.device("cpu"))
        assert a["epochs"] == b["epochs"] == int(name[6:10])
        for key in ("model", "codes"):
            for (n, u), (_, v) in zip(a[key].items(), b[key].items()):
                assert torch.equal(u, v), (name, n)
    log = rows(tmp_path / "parts")
    assert [r["train_loss"] for r in log] == [r["train_loss"] for r in rows(tmp_path / "straight")]
    assert {"code_spread", "code_top_share"} <= set(log[0]) and float(log[0]["code_spread"]) == 0.0


def test_grad_norm_benchmark_reads_the_clip_norm_and_leaves_the_snapshot_weights(tmp_path, splits, tiny_cifar_folder):
    """benchmarks/grad_norms.py at a snapshot: the norm clip_grad_norm_ sees on the run's next path and batch, the
    weights untouched (learning rate 0)."""
    import torch.nn.functional as F
    from benchmarks.grad_norms import at_snapshot
    from kshot_bench.runtime import device_layout

    # trained with a clip far below every norm: the benchmark reads the norm before any clip
    Trainer(smoke(epochs=2, snapshot_epochs="1", grad_clip=1e-6), tmp_path / "run", splits, torch.device("cpu"),
            progress=False).fit()
    snap = tmp_path / "run" / "snapshots" / "epoch-0001.pt"
    trainer, epoch, norms = at_snapshot(snap, tiny_cifar_folder, 3)
    assert epoch == 1 and len(norms) == 3 and all(n > 1e-3 for n in norms)
    saved = load_checkpoint(snap, torch.device("cpu"))["model"]
    for name, p in trainer.model.named_parameters():
        assert torch.equal(p.detach(), saved[name]), name
    step = epoch * trainer.steps_per_epoch
    x, y = next(iter(trainer.loader.epoch(epoch)))
    arch = trainer.path(step)
    trainer.model.zero_grad(set_to_none=True)
    F.cross_entropy(trainer.model(device_layout(x, trainer.device), arch, trainer.codes([arch])[0].detach()), y).backward()
    expected = torch.nn.utils.clip_grad_norm_(trainer.params, float("inf"))
    assert norms[0] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("value, words", [("0,2", "must lie in 1..epochs"), ("2,9", "must lie in 1..epochs"),
                                          ("two", "not a list of epochs")])
def test_bad_snapshot_epochs(value, words):
    with pytest.raises(UserError, match=words):
        smoke(epochs=3, snapshot_epochs=value)


def test_bf16_training_is_autocast_recorded_exact_on_resume_and_not_mixed(tmp_path, splits):
    """train_precision=bf16 (the CUDA default under auto) on the CPU: the forwards run in bf16 (the weights
    come out different from fp32 training), the checkpoint and weights record it, a resume is exact, and a
    checkpoint trained in one precision is not continued in the other."""
    cpu = torch.device("cpu")
    fp32 = Trainer(smoke(k=2), tmp_path / "fp32", splits, cpu, progress=False)
    fp32.fit()
    cfg = smoke(k=2, train_precision="bf16")
    straight = Trainer(cfg, tmp_path / "bf16", splits, cpu, progress=False)
    straight.fit()
    assert (fp32.precision, straight.precision) == ("fp32", "bf16")
    assert load_checkpoint(tmp_path / "bf16" / FINAL, cpu)["train_precision"] == "bf16"
    a, b = fp32.model.state_dict(), straight.model.state_dict()
    assert any(not torch.equal(a[n], b[n]) for n in a) and all(torch.isfinite(b[n]).all() for n in b)
    assert all(abs(float(r["train_loss"]) - float(s["train_loss"])) < 0.2
               for r, s in zip(rows(tmp_path / "fp32"), rows(tmp_path / "bf16")))
    stopped = Trainer(cfg, tmp_path / "stopped", splits, cpu, progress=False)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(stop_at_step=9)
    resumed = Trainer(cfg, tmp_path / "stopped", splits, cpu, progress=False)
    assert resumed.resume()
    resumed.fit()
    for (name, x), (_, y) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(x, y), name
    # `auto` resolves per device: a bf16 checkpoint (as CUDA writes under auto) is not continued in fp32 here
    state = torch.load(tmp_path / "stopped" / CHECKPOINT, weights_only=False)
    state["config"]["train_precision"] = "auto"
    torch.save(state, tmp_path / "stopped" / CHECKPOINT)
    with pytest.raises(UserError, match="trained in bf16; this run would train in fp32") as err:
        Trainer(smoke(k=2), tmp_path / "stopped", splits, cpu, progress=False).resume()
    assert "--set train_precision=bf16" in err.value.fix


def test_resume_rewrites_the_log_whole_or_not_at_all(tmp_path, splits, monkeypatch):
    # the issue-13 runs lost their log: an older version resumed a log that a newer one had rewritten with
    # columns it did not know, truncated the file, then failed on the first row
    cfg = smoke(epochs=2, warmup_epochs=1)
    Trainer(cfg, tmp_path, splits, torch.device("cpu"), progress=False).fit(until_epoch=2)
    with open(tmp_path / LOG, newline="") as fh:
        header, *body = list(csv.reader(fh))
    with open(tmp_path / LOG, "w", newline="") as fh:  # a newer version's extra column
        csv.writer(fh).writerows([header + ["from_the_future"], *[r + ["7"] for r in body]])
    before = (tmp_path / LOG).read_text()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerows", fail)
    with pytest.raises(OSError, match="disk full"):
        Trainer(cfg, tmp_path, splits, torch.device("cpu"), progress=False).resume()
    assert (tmp_path / LOG).read_text() == before
    monkeypatch.undo()
    assert Trainer(cfg, tmp_path, splits, torch.device("cpu"), progress=False).resume()
    log = rows(tmp_path)
    assert [r["epoch"] for r in log] == ["1", "2"] and [r["from_the_future"] for r in log] == ["7", "7"]


# the RunConfig fields of the first recorded runs (reports/ablation-cpu), and the fields added later that
# missed config.LATER_FIELDS (runs recorded since hash them; train.recorded_hash keeps every run's own name)
FIRST_FIELDS = {"dataset", "space", "k", "code", "seed", "channels", "cells", "bn_affine", "kshot_init", "epochs",
                "warmup_epochs", "batch_size", "lr", "lr_min", "momentum", "nesterov", "weight_decay", "grad_clip",
                "unique_sampling", "train_subset", "simplex_hidden", "simplex_lr", "simplex_paths", "simplex_interval",
                "archs", "score_images", "score_batch", "checkpoint_every"}
HASHED_SINCE_ADDED = {"simplex_batched", "snapshot_epochs", "width_search", "rc_weight", "rc_margin", "rc_tau",
                      "rc_widths", "score_by"}


def test_a_new_config_field_leaves_old_hashes_alone():
    """Every field added to RunConfig goes into config.LATER_FIELDS with its default, so that the hash of
    every config recorded before it stays what it was (add the new field there)."""
    import dataclasses

    from kshot_bench.config import LATER_FIELDS, RunConfig

    fields = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    new = set(fields) - FIRST_FIELDS - HASHED_SINCE_ADDED
    assert new <= set(LATER_FIELDS), f"add {sorted(new - set(LATER_FIELDS))} to config.LATER_FIELDS"
    assert all(LATER_FIELDS[f] == fields[f] for f in LATER_FIELDS), "LATER_FIELDS must hold each field's default"


def test_a_training_run_keeps_its_name_when_only_scoring_fields_change(tmp_path, splits):
    """A preset's scoring fields (archs, final_archs, score_images, ...) do not change the training: a resumed run
    keeps the config hash it started with; a field that changes the training gives a new name."""
    from kshot_bench.rundir import write_config

    cfg = smoke(epochs=1, warmup_epochs=1)
    first = Trainer(cfg, tmp_path, splits, torch.device("cpu"), progress=False)
    write_config(cfg, tmp_path, config_hash=first.config_hash)
    rescored = cfg.replace(archs="7", final_archs="all", score_images=32, bn_calibration=64)
    assert Trainer(rescored, tmp_path, splits, torch.device("cpu"), progress=False).config_hash == first.config_hash
    assert Trainer(cfg.replace(lr=0.5), tmp_path, splits, torch.device("cpu"), progress=False).config_hash != first.config_hash


def test_log_has_weight_diagnostics(tmp_path, splits):
    """Per epoch: the RMS of the op and trunk weights, and for K > 1 how far the copies lie apart."""
    from kshot_bench.models import build_supernet
    from kshot_bench.train import weight_stats

    Trainer(smoke(k=2, epochs=1, warmup_epochs=1), tmp_path, splits, torch.device("cpu"), progress=False).fit()
    row = rows(tmp_path)[0]
    assert float(row["w_rms_ops"]) > 0 and float(row["w_rms_trunk"]) > 0 and float(row["copy_spread_ops"]) > 0.5
    one = weight_stats(build_supernet(smoke(k=1)))
    assert one["copy_spread_ops"] == "" and one["w_rms_ops"] > 0
    same = weight_stats(build_supernet(smoke(k=3, kshot_init="identical")))
    assert same["copy_spread_ops"] < 1e-6 and same["copy_spread_trunk"] < 1e-6  # the mean of equal copies, rounded
