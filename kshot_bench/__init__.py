"""kshot_bench: K-shot NAS (Su et al., ICML 2021) and supernet ranking benchmarks.

The Python API (kshot_bench/api.py): `truth_table`, `evaluate_ranking`, `load_run`, `costs`."""

__version__ = "0.1.0"
__all__ = ["truth_table", "evaluate_ranking", "load_run", "costs"]


def __getattr__(name: str):
    """The API loads on first use, so that `import kshot_bench` stays light (no torch, pandas)."""
    if name in __all__:
        from kshot_bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'kshot_bench' has no attribute {name!r}")
