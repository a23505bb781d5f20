"""kshot_bench: K-shot NAS (Su et al., ICML 2021) and supernet ranking benchmarks on NAS-Bench-201."""

__version__ = "0.1.0"
