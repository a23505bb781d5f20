"""The `kshot-bench` texts that describe rather than run: the help built from the registries (spaces, datasets,
presets, code modes, simplex-net variants), the examples of each command, and `presets`, which lists what each
preset runs. The parser is in cli.py."""
from __future__ import annotations


def registry_names(registry: str) -> list:
    """Choices for the parser, read from a registry (lazy imports keep `--help` fast)."""
    if registry == "space":
        from kshot_bench.search_space import SPACES

        return SPACES.names()
    from kshot_bench.datasets import DATASETS

    return DATASETS.names()


def preset_help() -> str:
    from kshot_bench.config import RunConfig, presets
    from kshot_bench.search_space import SPACES

    per_space = "; ".join(f"{name}: {' | '.join(presets(name).names())}" for name in SPACES.names())
    embedded = ", ".join(f"{SPACES.get(n).EMBEDDED_PRESET} ({n})" for n in SPACES.names() if SPACES.get(n).EMBEDDED_PRESET)
    return (f"{per_space} (default: cpu with --data-root; without it {embedded}, sized for the embedded CIFAR-10 "
            f"sample; the space's presets in search_space/<space>.py; default space {RunConfig.space})")


def rank_preset_help() -> str:
    """What `rank` runs without --preset, with the numbers of the presets it picks."""
    from kshot_bench.config import RunConfig, presets

    def describe(name: str) -> str:
        v = {**RunConfig().to_dict(), **presets("nb201").get(name)}
        images = "all" if not v["score_images"] else f"{v['score_images']:,}"
        return f"{name}: {v['epochs']} epochs, {v['archs']} archs on {images} scoring images"

    return (preset_help() + ". rank without --preset: with neither --data-root nor --checkpoint, NB201 runs "
            f"{describe('demo')} of the embedded sample; with --data-root (or --checkpoint) it runs {describe('cpu')}. "
            "With --checkpoint only the preset's scoring fields apply (archs, score_images, score_batch); training "
            "comes from the checkpoint. `kshot-bench presets` lists every field of every preset")


def code_modes() -> list:
    from kshot_bench.simplex import CODE_MODES

    return CODE_MODES.names()


def variant_names():
    from kshot_bench.simplex import SIMPLEX_VARIANTS

    return SIMPLEX_VARIANTS.names()


# ----------------------------------------------------------------------------- presets
def cmd_presets(args) -> int:
    """Each preset of each space: what it is for and the fields it sets (the rest are the defaults); with
    --preset, every field of the config it resolves to."""
    from kshot_bench.config import RunConfig, from_preset, presets
    from kshot_bench.search_space import SPACES

    spaces = [SPACES.canonical(args.space)] if args.space else SPACES.names()
    if args.preset:
        if len(spaces) > 1:
            spaces = [n for n in spaces if args.preset in presets(n)] or [RunConfig.space]
        cfg = from_preset(args.preset, space=spaces[0])
        print(f"{spaces[0]} preset {args.preset}: {getattr(SPACES.get(spaces[0]), 'PRESET_ABOUT', {}).get(args.preset, '')}")
        for key, value in cfg.to_dict().items():
            print(f"  {key} = {value}")
        return 0
    defaults = RunConfig().to_dict()
    for name in spaces:
        space = SPACES.get(name)
        about = getattr(space, "PRESET_ABOUT", {})
        print(f"{name}:" + (f" (without --data-root: {space.EMBEDDED_PRESET})" if space.EMBEDDED_PRESET else ""))
        for preset in presets(name).names():
            fields = {k: v for k, v in presets(name).get(preset).items() if k != "space" and defaults.get(k) != v}
            print(f"  {preset}: {about.get(preset, '')}")
            print("    " + (", ".join(f"{k}={v}" for k, v in fields.items()) or "the defaults (RunConfig)"))
    print("\nfields not listed keep their defaults; `kshot-bench presets --preset NAME` prints every field")
    return 0


EXAMPLES = {
    "train": """examples:
  kshot-bench train --dataset cifar10 --k 4 --code simplex --preset cpu --data-root ~/data/cifar10 --out runs/k4
  kshot-bench train ... --out runs/k4 --resume          # continue an interrupted run
  kshot-bench train ... --preset smoke --set epochs=3    # override single config fields
  kshot-bench train ... --preset long --set snapshot_epochs=10,25,50,100 --until-epoch 25   # in parts, with snapshots
  kshot-bench train --space mbv2 --k 4 --preset cpu --data-root ~/data/cifar10 --out runs/mbv2-k4   # MobileNetV2 + widths
  kshot-bench train --space mbv2 ... --set rc_weight=0          # without the channel regulariser r_c
  kshot-bench train --space mbv2 ... --set width_search=false   # operations only, every width 1.0
  torchrun --nproc_per_node 8 -m kshot_bench.cli train --space mbv2 --preset imagenet ...   # 8 GPUs, global batch 1024
  kshot-bench train ... --set micro_batches=8 --resume   # continue an 8-process run in one process (same BN parts)
  kshot-bench train ... --set simplex_threads=0         # CPU: the simplex-net step batched in one pass (the GPU
                                                        # default) instead of its paths side by side on threads""",
    "rank": """examples:
  kshot-bench rank --dataset cifar10 --k 4                                               # demo on the embedded sample
  kshot-bench rank --dataset cifar10 --k 4 --preset cpu --data-root ~/data/cifar10      # train, then rank
  kshot-bench rank --k 1 --preset cpu --data-root ~/data/cifar10 --out runs/oneshot       # the one-shot baseline
  kshot-bench rank --space mbv2 --k 4 --preset cpu --data-root ~/data/cifar10   # MBV2: scores + codes (no truth)
  kshot-bench rank --checkpoint runs/k4/supernet.pt --archs unique --data-root ~/data/cifar10
  kshot-bench rank --checkpoint runs/k4 --preset long --data-root ~/data/cifar10    # every snapshot of a run
  kshot-bench rank ... --truth cifar10_test_12ep                                         # another ground truth
  kshot-bench rank --scores my_predictor.csv --space nb201 --dataset cifar10 --out runs/mine  # anyone's scores
Re-running an interrupted rank command continues its training and scoring where they stopped.""",
    "search": """examples:
  kshot-bench search --space nb201 --dataset cifar10 --fitness oracle --seeds 0 1 2 3 4
  kshot-bench search --fitness oracle --algo random --seeds 0 1 2 3 4      # same evaluation budget
  kshot-bench search --fitness supernet --checkpoint runs/k4/train/supernet.pt --data-root ~/data/cifar10
  kshot-bench search --fitness oracle --flops-limit 100                     # MFLOPs, NB201 convention
  kshot-bench search --checkpoint runs/mbv2-k4/supernet.pt --flops-limit 330 --data-root ~/data/cifar10
                                                       # MBV2: MFLOPs of one 224x224 image (SPEC 7)""",
    "ablate": """examples:
  kshot-bench ablate --dataset cifar10 --preset cpu --seeds 0 1 --k 1 4 --data-root ~/data/cifar10
  kshot-bench ablate ... --k 1 2 4 8 --epochs 6 12      # adds the training-budget axis of Fig. 7
Cells are rank runs in OUT/k<K>-<code>[-e<epochs>]-s<seed>; finished cells are skipped on re-runs.""",
    "compare": """examples (any epochs, seeds or methods, as long as archs, images and truth are the same):
  kshot-bench compare reports/long-cifar10/runs/curve-k4/epoch-0050 reports/long-cifar10/runs/curve-k1/epoch-0075
  kshot-bench compare runs/rank-k4 my_predictor.csv        # a score file, on the run's archs (CSV or JSON)
  kshot-bench compare s0-decay/epoch-0100 s0-none/epoch-0100 --pair s1-decay/epoch-0100 s1-none/epoch-0100
                                                           # the mean difference over two training seeds
  kshot-bench compare runs/s1-released runs/s1-valid/epoch-0250 --common-archs
                                                           # one supernet on two scoring protocols, on the archs both scored""",
    "report": """examples:
  kshot-bench report runs/ablation-cifar10-cpu --out reports/ablation-cpu
  kshot-bench report runs/rank-a runs/rank-b runs/search-x --out reports/mine""",
    "export-benchmark": """examples:
  kshot-bench export-benchmark --from NAS-Bench-201-v1_1-096897.pth --out nb201.npz
  kshot-bench export-benchmark --from NATS-tss-v1_0-3ffb9-simple --out nb201.npz""",
    "proxies": """examples:
  kshot-bench proxies --space macro --dataset cifar10 --archs all --data-root ~/data/cifar10 --out macro_proxies.csv
  kshot-bench proxies --space nb201 --dataset cifar10 --archs 500 --proxies synflow naswot --out nb201_500.csv
each network is initialised with one fixed seed; synflow needs no data, the others one batch of training images""",
    "cost": """examples:
  kshot-bench cost --dataset cifar10 --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
  kshot-bench cost --dataset ImageNet16-120 --index 0 6111
  kshot-bench cost --dataset cifar100 --all > costs.csv
  kshot-bench cost --space mbv2 --arch k3e3-k5e3-...-k7e6_se@1.0-0.8-...-1.0   # 21 ops, optional @ and 24 widths
  kshot-bench cost --space mbv2 --sample 1000 --seed 0 > mbv2_costs.csv
columns: params = parameter count, flops = multiply-adds of one image's forward pass (NB201: its convention at the
dataset's size; mbv2: SPEC 7, one 224x224 image, 1,000 classes)""",
    "retrain": """examples:
  kshot-bench retrain --arch 'k3e6-...-k5e6@1.0-...' --data-root ~/data/imagenet --out runs/retrain-b
  torchrun --nproc_per_node 8 -m kshot_bench.cli retrain --arch ... --data-root ~/data/imagenet --out runs/retrain-b
  kshot-bench retrain ... --out runs/retrain-b --resume      # continue an interrupted run
  kshot-bench retrain --preset cpu --arch ... --data-root ~/data/cifar10-imagenet-layout --out runs/retrain-cpu
the imagenet preset: RMSProp 0.9, batch 1024, lr 0 -> 0.128 over 5 epochs then x0.97 every 2.4 epochs,
EMA 0.9999, label smoothing 0.1, 350 epochs, bf16 autocast on CUDA (kshot_bench/retrain.py)""",
    "evaluate": """examples:
  kshot-bench evaluate --checkpoint runs/retrain-b/retrained.pt --data-root ~/data/imagenet
  kshot-bench evaluate --checkpoint runs/retrain-b/retrained.pt --data-root ~/data/imagenet --weights raw""",
}
