"""Pure-Python search spaces (no torch import here).

Each space is a module with the same interface, so the engine (train, scoring, search, ablate,
report) runs any of them through `SPACES` without knowing which:

  NAME, HAS_WIDTHS        the registry name; whether archs carry per-layer widths (channel search)
  Arch                    archs are plain hashable tuples (NB201: 6 op ids; MBV2: (ops, widths))
  validate(arch)          the arch, checked (UserError naming the problem otherwise)
  from_str / to_str       the arch string, both ways
  sample(rng, unique=False, widths=True, sampling="uniform")   a sampled path (widths=False: every width 1.0)
  SAMPLINGS               the ways `sample` can draw paths (the first is the default; NB201 adds ENN-balanced)
  mutate(arch, rng, prob) / crossover(a, b, rng)   variation for evolutionary search
  encode(arch)            the simplex-net's architecture-branch input (one-hot ops)
  encode_width(arch)      the channel-branch input (one-hot widths), or None without widths
  width_variants(arch, rng, n), width_values(arch)  width settings for the channel regulariser r_c
  canonical(arch)         a string equal for archs that compute the same function
  cost(arch, num_classes, input_size)   (parameters, FLOPs) of the stand-alone network
  COST_CONVENTION         the (num_classes, input_size) that FLOPs limits refer to, or None = the dataset's
What the space offers the engine (docs/architecture.md); the engine asks these, never the space's name:
  DATASETS                the datasets it trains and ranks on
  NUM_ARCHS               how many archs it has, or None where they are too many to list
  arch_set(spec, seed, widths=True)   (keys, archs, description) of all | unique | N (a seeded sample)
  KEY, KEY_TYPE, key_of(arch), from_key(key)   how results files name an arch (NB201: its index)
  TRUTH, TRUTH_TABLE      dataset -> default ground-truth column of its shipped table (rows = keys); {} = none
  REPEATS                 dataset -> the table's columns of independent trainings (the noise ceiling); {} = none
  TRUTH_SOURCE, PAPER_TAU, describe_network(protocol)   for summaries: where the truth comes from, the paper's
                          Table 4 taus (SPOS, K-shot %) per dataset where it reports them, the supernet's shape
  COST_BASELINES, table_baselines(dataset)   ranking baselines: costs, and columns of its shipped tables
  outputs_constant(arch)  the network computes a constant (NB201: no input-to-output path)
  PRESETS, EMBEDDED_PRESET, check_options(values, defaults)   its run presets and config checks
tests/test_search_space.py checks every registered space against this list.
"""
from kshot_bench.registry import Registry
from kshot_bench.search_space import macro, mbv2, nb201

SPACES: Registry = Registry("search space")
SPACES.register("nb201", nb201)
SPACES.register("mbv2", mbv2)
SPACES.register("macro", macro)

INTERFACE = ("NAME", "HAS_WIDTHS", "SAMPLINGS", "validate", "from_str", "to_str", "sample", "mutate", "crossover", "encode",
             "encode_width", "width_variants", "width_values", "canonical", "cost", "COST_CONVENTION", "DATASETS",
             "NUM_ARCHS", "arch_set", "KEY", "KEY_TYPE", "key_of", "from_key", "TRUTH", "REPEATS", "TRUTH_SOURCE", "PAPER_TAU", "describe_network", "COST_BASELINES",
             "table_baselines", "outputs_constant", "PRESETS", "EMBEDDED_PRESET", "check_options")
