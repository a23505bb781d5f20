"""Shared by the benchmark scripts: write the result file and print it as the last line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

RESULTS = Path(__file__).resolve().parent / "results"


def emit(result: Dict, name: str, quick: bool, device: str = "cpu", out: Optional[Path] = None) -> Path:
    path = out or RESULTS / f"{name}{'-quick' if quick else ''}-{device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return path
