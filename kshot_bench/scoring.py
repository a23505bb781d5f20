"""Scoring: a trained supernet and an arch set to scores, each arch with its own code.

Scoring protocol: every arch is evaluated with its own code pi(a) on a fixed set of scoring images (a seeded
subset of the dataset's scoring part, the same for every run and seed), in fixed batches; BN with each batch's
statistics, or (`bn_calibration`) with statistics re-estimated per arch over fixed training images. Score =
top-1 accuracy (%); the mean cross-entropy is kept too. Scores are appended to `predictions.partial.csv` as
they come, so an interrupted job continues where it stopped.
"""
from __future__ import annotations

import csv
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.runtime import bf16_autocast

SCORE_SUBSET_SEED = 0


CALIBRATION_SEED = 1  # the training images that re-estimate BN statistics (bn_calibration)


SCORE_KINDS = {
    "acc": "top-1 accuracy (%) on the scoring images",
    "loss": "mean cross-entropy on the scoring images, negated (lower loss ranks higher)",
}


def score_values(rows: Dict[int, dict], indices: Sequence[int], kind: str) -> np.ndarray:
    """The scores an arch set is ranked by: accuracy, or the negated mean cross-entropy."""
    if kind == "acc":
        return np.array([rows[i]["score"] for i in indices], dtype=np.float64)
    return -np.array([rows[i]["val_loss"] for i in indices], dtype=np.float64)


# ----------------------------------------------------------------------------- arch sets


@dataclass
class ScoreSet:
    batches: list
    n_images: int
    description: str
    calibration: list = field(default_factory=list)  # training batches that re-estimate each arch's BN statistics


def scoring_batches(splits, info, limit: int, batch_size: int, device, calibration: int = 0) -> ScoreSet:
    """A fixed, class-mixed subset of the scoring part: the first `limit` of a seeded permutation; with
    `calibration` > 0 also that many training images (unaugmented, the first of another seeded permutation)
    over which each arch's BN statistics are re-estimated before it is scored in eval mode."""
    import torch

    from kshot_bench.data import TensorLoader
    from kshot_bench.runtime import device_layout

    n_all = splits.n_score
    n = n_all if limit <= 0 else min(limit, n_all)
    keep = torch.as_tensor(np.random.default_rng(SCORE_SUBSET_SEED).permutation(n_all)[:n])
    x, y = splits.score_subset(keep)  # an image folder (ImageNet) decodes only these
    loader = TensorLoader(x.to(device), y.to(device), info, batch_size, seed=0, augment=False, drop_last=False)
    batches = [(device_layout(xb, device), yb) for xb, yb in loader.fixed_batches()]
    bn = "BN with batch statistics"
    calib = []
    if calibration > 0:
        m = min(calibration, splits.n_train)
        pick = torch.as_tensor(np.random.default_rng(CALIBRATION_SEED).permutation(splits.n_train)[:m])
        cx, cy = splits.train_subset(pick)
        cal = TensorLoader(cx.to(device), cy.to(device), info, batch_size, seed=0, augment=False, drop_last=False)
        calib = [(device_layout(xb, device), yb) for xb, yb in cal.fixed_batches()]
        bn = (f"BN statistics of each arch re-estimated over {m:,} images of {info.train_part} (seeded subset "
              f"{CALIBRATION_SEED}, batches of {batch_size}), then eval-mode BN")
    desc = (f"{n:,} images of {info.score_part} (seeded subset {SCORE_SUBSET_SEED} of {n_all:,}), "
            f"batches of {batch_size}, {bn}")
    return ScoreSet(batches, n, desc, calib)


TEST_PART = "the CIFAR-10 test set (the images the ground truth cifar10_test_200ep is measured on)"


def with_test_images(splits, info, root):
    """`score_part=test`: the same training part, and the 10,000 CIFAR-10 test images as the scoring part (the
    released NB201 one-shot rankings scored every arch on all of them, batch 512, batch statistics: `rank
    --score-protocol released`). The ground truth is measured on these images too, so this is the released
    protocol, not NB201's, which keeps the test set out of the search (`valid`)."""
    import dataclasses

    from kshot_bench.data import cifar10_test_set

    if root is None or getattr(splits, "embedded", False):
        raise UserError("score_part=test needs the CIFAR-10 test set: the embedded sample has none",
                        fix="pass --data-root DIR with CIFAR-10 (python batches or train/ and test/ image folders)")
    x, y = cifar10_test_set(root)
    scored = dataclasses.replace(splits, score_x=x, score_y=y)
    return scored, dataclasses.replace(info, score_part=TEST_PART)


def score_precision(cfg, device) -> str:
    """The scoring precision of a run: `score_precision`, with auto = bf16 on CUDA, fp32 elsewhere (bf16
    autocast is the GPU's fast path; on CPUs without bf16 units it is slower). Recorded in the protocol;
    benchmarks/bf16_scoring.py measures how far bf16 moves a ranking."""
    from kshot_bench.runtime import use_bf16

    return "bf16" if use_bf16(cfg.score_precision, device) else "fp32"


def score_arch(model, arch, code, batches, bf16: bool = False, calibration=None) -> Tuple[float, float]:
    """Top-1 accuracy (%) and mean cross-entropy of one arch with its code over the scoring batches
    (`bf16`: under bfloat16 autocast; the loss is computed in float32 as autocast does for it). With
    `calibration` batches: every BN site's statistics are first re-estimated over them (each normalised by
    its own batch, as in training), and the scoring batches then run with those fixed statistics."""
    import torch
    import torch.nn.functional as F

    from kshot_bench.supernet.ops import BNStatistics, bn_statistics

    dev = batches[0][0].device
    correct = torch.zeros((), dtype=torch.long, device=dev)
    loss = torch.zeros((), dtype=torch.float64, device=dev)
    n = 0
    stats = BNStatistics() if calibration else None
    with torch.inference_mode(), bf16_autocast(dev, bf16):
        for x, _ in calibration or ():
            with bn_statistics(stats, "collect"):
                model(x, arch, code)
        for x, y in batches:
            with bn_statistics(stats, "fixed") if stats is not None else nullcontext():
                logits = model(x, arch, code)
            correct += (logits.argmax(1) == y).sum()
            loss += F.cross_entropy(logits, y, reduction="sum").double()
            n += len(y)
    return 100.0 * float(correct) / n, float(loss) / n


def computation_groups(model, archs: Sequence, codes) -> List[List[int]]:
    """Positions of `archs` grouped by what their forward pass computes, in order of first appearance: archs with
    the same code and the same `model.computation_key` (NB201: the live edges, so archs that differ only in edges
    that cannot affect the output) run the same ops on the same inputs and get the same score, so scoring
    computes each group once. A model without `computation_key` puts every arch in a group of its own.
    Only codes that are equal exactly group together: with simplex-net codes every arch is its own group."""
    key_of = getattr(model, "computation_key", None)
    if key_of is None:
        return [[j] for j in range(len(archs))]
    groups: Dict[tuple, List[int]] = {}
    for j, arch in enumerate(archs):
        groups.setdefault((key_of(arch), tuple(codes[j].tolist())), []).append(j)
    return list(groups.values())


def score_each(model, archs: Sequence, codes, batches, bf16: bool = False,
               calibration=None) -> List[Tuple[float, float]]:
    """`score_arch` of every arch with its code (`codes[j]`), each `computation_groups` group computed once."""
    result: List = [None] * len(archs)
    for group in computation_groups(model, archs, codes):
        scored = score_arch(model, archs[group[0]], codes[group[0]], batches, bf16, calibration)
        for j in group:
            result[j] = scored
    return result


def score_archs_shared(model, archs: Sequence, code, batches, bf16: bool = False) -> List[Tuple[float, float]]:
    """`score_arch` of every arch with one code, batch by batch: archs in a row that share their first stages
    share those stages' outputs (a supernet with PREFIX_SHARING; `forward(..., prefix=)`). The same operations
    on the same inputs as scoring them one by one, so the same numbers; sorted by `model.stage_keys`, the archs
    of a chain-shaped space (Macro, MobileNetV2 one-shot) skip most of their trunk."""
    import torch
    import torch.nn.functional as F

    from kshot_bench.supernet.kshot import PrefixCache

    dev = batches[0][0].device
    correct = [torch.zeros((), dtype=torch.long, device=dev) for _ in archs]
    loss = [torch.zeros((), dtype=torch.float64, device=dev) for _ in archs]
    n = 0
    with torch.inference_mode(), bf16_autocast(dev, bf16):
        for x, y in batches:
            cache = PrefixCache()
            for j, arch in enumerate(archs):
                logits = model(x, arch, code, prefix=cache)
                correct[j] += (logits.argmax(1) == y).sum()
                loss[j] += F.cross_entropy(logits, y, reduction="sum").double()
            n += len(y)
    return [(100.0 * float(c) / n, float(l) / n) for c, l in zip(correct, loss)]


SHARED_CHUNK = 128  # archs scored together with shared prefixes between two journal writes


PARTIAL = "predictions.partial.csv"


def score_archs(model, codes, batches, keys: Sequence, archs: Sequence, out_dir: Path, k: int,
                progress: bool = True, dist=None, bf16: bool = False, calibration=None,
                stats: Optional[Dict] = None) -> Dict:
    """Score every arch (each with its own code), resuming from the journal `out_dir/predictions.partial*.csv`.
    Archs that compute the same function (`computation_groups`) are scored once and recorded each; `stats`, when
    given, receives `computed`: how many forward computations (arch scorings) this call ran.

    `keys` name the archs in that journal and in the result (NB201: index; other spaces: arch string).
    Under torchrun (`dist`, distributed.Dist) rank r scores archs r, r+N, ... into its own journal
    `predictions.partial.rR.csv`; every journal found counts as done, whichever process count wrote it, so
    an interrupted run continues with any number of processes. Returns every arch's result on every rank.
    """
    import torch
    from tqdm import tqdm

    from kshot_bench.distributed import Dist

    dist = dist or Dist()
    out_dir = Path(out_dir)
    fields = ["key", "score", "val_loss"] + [f"lam_{i}" for i in range(k)]
    as_key = {str(key): key for key in keys}
    done = _read_journals(out_dir, as_key, fields)
    dist.barrier()  # every process has read the journals before any of them adds to its own
    mine = set(dist.share(list(keys)))
    todo = [(key, arch) for key, arch in zip(keys, archs) if key in mine and key not in done]
    path = out_dir / (PARTIAL if not dist.active else PARTIAL.replace(".csv", f".r{dist.rank}.csv"))
    # tests: interrupt after this many computations (archs, when prefixes are shared)
    stop_after = int(os.environ.get("KSHOT_TEST_STOP_AFTER", "0"))
    model.eval()
    with torch.no_grad():
        all_codes = codes([a for _, a in todo]) if todo else None
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(fields)
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc="scoring" + (f" (rank {dist.rank})" if dist.active else ""),
                   unit="arch", disable=not progress or not dist.is_main, mininterval=1.0)
        def record(key, code, acc, loss):
            lam = code.tolist()
            done[key] = {"score": acc, "val_loss": loss, **{f"lam_{i}": v for i, v in enumerate(lam)}}
            writer.writerow([key, f"{acc:.6g}", f"{loss:.6g}"] + [f"{v:.6g}" for v in lam])

        computed = 0
        if todo and shares_prefixes(model, all_codes, calibration):
            code = all_codes[0]
            computed = len(todo)
            order = sorted(range(len(todo)), key=lambda j: model.stage_keys(todo[j][1]))
            for c in range(0, len(order), SHARED_CHUNK):
                if stop_after and c >= stop_after:
                    raise KeyboardInterrupt
                chunk = [todo[j] for j in order[c:c + SHARED_CHUNK]]
                for (key, _), (acc, loss) in zip(chunk, score_archs_shared(model, [a for _, a in chunk], code, batches, bf16)):
                    record(key, code, acc, loss)
                fh.flush()
                bar.update(len(chunk))
        else:
            for group in computation_groups(model, [a for _, a in todo], all_codes) if todo else ():
                if stop_after and computed == stop_after:
                    raise KeyboardInterrupt
                j = group[0]
                acc, loss = score_arch(model, todo[j][1], all_codes[j], batches, bf16, calibration)
                computed += 1
                for i in group:
                    record(todo[i][0], all_codes[i], acc, loss)
                fh.flush()
                bar.update(len(group))
        bar.close()
    if stats is not None:
        stats["computed"] = computed
    dist.barrier()  # every rank's journal is complete: read them all (one process too, so that a result
    return _read_journals(out_dir, as_key, fields)  # never depends on which run or process count scored it


def journal_count(out_dir: Path, keys: Sequence, k: int) -> int:
    """How many of `keys` the journals in `out_dir` hold already (scored by an earlier, interrupted call)."""
    fields = ["key", "score", "val_loss"] + [f"lam_{i}" for i in range(k)]
    return len(_read_journals(Path(out_dir), {str(key): key for key in keys}, fields))


def shares_prefixes(model, codes, calibration) -> bool:
    """Scoring can share trunk prefixes between archs: the supernet offers it, every arch has the same code
    (one-shot, fixed codes) and BN uses batch statistics (re-estimated statistics are per arch)."""
    import torch

    return (getattr(model, "PREFIX_SHARING", False) and not calibration
            and all(torch.equal(codes[0], c) for c in codes[1:]))


def _read_journals(out_dir: Path, as_key: Dict[str, object], fields: List[str]) -> Dict:
    """Scores in every partial journal of `out_dir` (one, or one per rank); rows cut short are dropped.
    Values are read back from the journal's text, so a result does not depend on which run made it."""
    done: Dict = {}
    for path in sorted(Path(out_dir).glob(PARTIAL.replace(".csv", "*.csv"))):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("key") in as_key and all(row.get(f) not in (None, "") for f in fields):
                    done[as_key[row["key"]]] = {f: float(row[f]) for f in fields[1:]}
    return done


def remove_journals(out_dir: Path) -> None:
    for path in Path(out_dir).glob(PARTIAL.replace(".csv", "*.csv")):
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- outputs


CODE_LABELS = {"simplex": "simplex-net codes", "uniform": "fixed 1/K codes", "random": "random codes"}
SCORE_CODE_LABELS = {"uniform": "scored with 1/K codes", "mean": "scored with the mean code"}  # score_code != own


def code_label(k: int, code: str, score_code: str = "own") -> str:
    """How a run's supernet merges its copies, as its summary names it; with `score_code` the code it was scored
    with where that is not each arch's own."""
    if k == 1:
        return "one-shot"
    scored = f", {SCORE_CODE_LABELS[score_code]}" if score_code in SCORE_CODE_LABELS else ""
    return CODE_LABELS.get(code, code) + scored


def load_supernet(path: Path, device, expect: Dict[str, object]):
    """Supernet + code source + config from a train checkpoint; `expect` holds fields the user set
    explicitly (dataset, k, code), which must match the checkpoint."""
    from kshot_bench.config import from_dict
    from kshot_bench.rundir import load_checkpoint, run_hash
    from kshot_bench.models import build_supernet, code_source_from

    state = load_checkpoint(path, device)
    if "model" not in state:
        raise UserError(f"{path} holds no supernet weights", fix="pass the supernet.pt of a train run")
    cfg = from_dict(state["config"])
    wrong = [f"{k}: checkpoint {getattr(cfg, k)!r}, asked {v!r}" for k, v in expect.items()
             if v is not None and getattr(cfg, k) != v]
    if wrong:
        raise UserError(f"checkpoint {path} does not match this run ({'; '.join(wrong)})",
                        fix="drop those flags to use the checkpoint's own settings, or pass a matching checkpoint")
    model = build_supernet(cfg).to(device)
    model.load_state_dict(state["model"])
    codes = code_source_from(state, device)
    finished = "epochs" in state
    if not state.get("config_hash"):  # files written before checkpoints carried it: the run's config.json
        path = Path(path)
        run_dir = path.parent.parent if path.parent.name == "snapshots" else path.parent
        state["config_hash"] = run_hash(cfg, run_dir)
    return cfg, model, codes, finished, state
