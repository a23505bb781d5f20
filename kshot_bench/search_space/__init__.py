"""Pure-Python search spaces (no torch import here).

Each space is a module exposing the same functions (validate, from_str, to_str, sample, mutate,
crossover, encode, canonical, ...); `SPACES` maps CLI names to them.
"""
from kshot_bench.registry import Registry
from kshot_bench.search_space import nb201

SPACES: Registry = Registry("search space")
SPACES.register("nb201", nb201)
