from setuptools import find_packages, setup

setup(
    name="kshot-bench",
    version="0.1.0",
    description="K-shot NAS (Su et al., ICML 2021) supernets and ranking benchmarks on NAS-Bench-201",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["kshot_bench", "kshot_bench.*"]),
    package_data={"kshot_bench": ["package_data/*.npz", "package_data/*.txt"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "scipy>=1.10",
        "pandas>=2.0",
        "matplotlib>=3.7",
        "seaborn>=0.12",
        "tqdm>=4.60",
        "pillow>=9.0",
        "nas-bench-201>=2.1",
        "nats_bench>=1.7",
        "pymoo>=0.6",
    ],
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["kshot-bench = kshot_bench.cli:main"]},
)
