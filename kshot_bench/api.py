"""The Python API (exported at the package's top level; the CLI runs on the same functions):

    import kshot_bench as kb
    table = kb.truth_table("nb201", "cifar10")           # a DataFrame: one row per arch, `truth` + every column
    result = kb.evaluate_ranking({arch_str: score, ...}, "nb201", "cifar10")   # what `rank --scores` prints
    run = kb.load_run("runs/k4/train")                    # a trained supernet (run dir, supernet.pt or snapshot)
    run.score(archs, data_root="~/data/cifar10")          # DataFrame: key, arch_str, score, val_loss
    run.codes(archs)                                      # DataFrame of each arch's simplex code
    kb.costs(archs, "nb201", "cifar10")                   # DataFrame: key, arch_str, params, flops
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from kshot_bench.errors import UserError
from kshot_bench.evaluate import evaluate_ranking

__all__ = ["truth_table", "evaluate_ranking", "load_run", "costs", "TrainedRun"]


def truth_table(space: str = "nb201", dataset: str = "cifar10"):
    """The ground truth of a space and dataset as a pandas DataFrame indexed by the space's key: `arch_str`,
    `truth` (the default truth column for the dataset) and every column of the shipped table."""
    import pandas as pd

    from kshot_bench.ground_truth import has_truth
    from kshot_bench.resources import package_npz
    from kshot_bench.search_space import SPACES

    from kshot_bench.datasets import canonical_dataset

    sp = SPACES.get(space)
    dataset = canonical_dataset(dataset)  # any accepted spelling (imagenet16)
    if not has_truth(sp, dataset):
        raise UserError(f"the {space} space has no ground truth for {dataset} (it has: {', '.join(sp.TRUTH) or 'none'})",
                        fix="ask for a space and dataset with a truth table")
    table = package_npz(sp.TRUTH_TABLE)
    n = len(table[sp.TRUTH[dataset]])
    keys = list(range(n))
    frame = pd.DataFrame({"arch_str": [sp.to_str(sp.from_key(k)) for k in keys],
                          "truth": table[sp.TRUTH[dataset]]}, index=pd.Index(keys, name=sp.KEY))
    for column, values in table.items():
        if values.dtype.kind == "f":
            frame[column] = values
    return frame


def _archs(space, archs: Sequence):
    """Arch strings, keys or arch objects -> arch objects of the space."""
    out = []
    for a in archs:
        if isinstance(a, str):
            out.append(space.from_str(a))
        elif isinstance(a, (int, np.integer)) and space.NUM_ARCHS is not None:
            out.append(space.from_key(int(a)))
        else:
            out.append(space.validate(a))
    return out


def costs(archs: Sequence, space: str = "nb201", dataset: str = "cifar10"):
    """Parameters and FLOPs of archs (strings, keys or arch objects) by the space's convention, as a DataFrame
    (`kshot-bench cost`)."""
    import pandas as pd

    from kshot_bench.datasets import DATASETS
    from kshot_bench.search_space import SPACES

    sp = SPACES.get(space)
    info = DATASETS.get(dataset)
    classes, size = sp.COST_CONVENTION or (info.num_classes, info.input_size)
    rows = []
    for arch in _archs(sp, archs):
        params, flops = sp.cost(arch, classes, size)
        key = sp.key_of(arch) if sp.NUM_ARCHS is not None else None
        rows.append({sp.KEY: key, "arch_str": sp.to_str(arch), "params": params, "flops": flops})
    return pd.DataFrame(rows)


@dataclass(repr=False)
class TrainedRun:
    """A trained supernet and its code source, loaded from a run."""
    path: Path
    config: object
    model: object
    code_source: object
    device: object
    state: dict

    def __repr__(self) -> str:
        """One line: what the run is, not its tensors."""
        c = self.config
        epochs = self.state.get("epochs", self.state.get("epoch"))
        params = sum(p.numel() for p in self.model.parameters())
        return (f"TrainedRun({str(self.path)!r}: {c.space} on {c.dataset}, K={c.k} code={c.code}, {epochs} of "
                f"{c.epochs} epochs, config {self.state.get('config_hash', c.hash())}, {params:,} weights, "
                f"device {self.device})")

    @property
    def space(self):
        from kshot_bench.search_space import SPACES

        return SPACES.get(self.config.space)

    def codes(self, archs: Sequence):
        """Each arch's code (K weights on the simplex) as a DataFrame with columns lam_0 .. lam_{K-1}."""
        import pandas as pd
        import torch

        archs = _archs(self.space, archs)
        with torch.no_grad():
            lam = self.code_source(archs).detach().cpu().double().numpy()
        frame = pd.DataFrame(lam, columns=[f"lam_{i}" for i in range(lam.shape[1])])
        frame.insert(0, "arch_str", [self.space.to_str(a) for a in archs])
        return frame

    def score(self, archs: Sequence, data_root: Optional[Union[str, Path]] = None, images: Optional[int] = None,
              download: bool = False):
        """Top-1 accuracy (%) and mean cross-entropy of each arch with its own code on the run's scoring images
        (the seeded subset a rank run uses; `images` of them, default the run's), as a DataFrame."""
        import pandas as pd
        import torch

        from kshot_bench.data import load_for
        from kshot_bench.datasets import DATASETS
        from kshot_bench.scoring import score_each, score_precision, scoring_batches

        archs = _archs(self.space, archs)
        cfg = self.config
        splits = load_for(cfg, Path(data_root).expanduser() if data_root else None, download)
        n = cfg.score_images if images is None else images
        score_set = scoring_batches(splits, DATASETS.get(cfg.dataset), n, cfg.score_batch, self.device,
                                    cfg.bn_calibration)
        bf16 = score_precision(cfg, self.device) == "bf16"
        self.model.eval()
        with torch.no_grad():
            codes = self.code_source(archs)
        rows = []
        scored = score_each(self.model, archs, codes, score_set.batches, bf16, score_set.calibration)
        for arch, (acc, loss) in zip(archs, scored):
            key = self.space.key_of(arch) if self.space.NUM_ARCHS is not None else None
            rows.append({self.space.KEY: key, "arch_str": self.space.to_str(arch), "score": acc, "val_loss": loss})
        return pd.DataFrame(rows)


def load_run(path: Union[str, Path], device: str = "cpu") -> TrainedRun:
    """A trained supernet: a train run directory (its final supernet.pt, else its checkpoint), a rank run
    directory (its train/), or a checkpoint file (supernet.pt, snapshots/epoch-EEEE.pt)."""
    import torch

    from kshot_bench.scoring import load_supernet

    path = Path(path).expanduser()
    if path.is_dir():
        candidates = [path / "supernet.pt", path / "checkpoint.pt", path / "train" / "supernet.pt",
                      path / "train" / "checkpoint.pt"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise UserError(f"{path} holds no supernet (supernet.pt or checkpoint.pt, or a train/ folder with one)",
                            fix="pass a train run, a rank run that trained, or a checkpoint file")
        path = found
    dev = torch.device(device)
    cfg, model, codes, _, state = load_supernet(path, dev, {})
    model.eval()
    return TrainedRun(path, cfg, model, codes, dev, state)
