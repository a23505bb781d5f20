"""The GPU check's dry run (issue 28): scripts/gpu_check.sh --dry-run on the CPU, so that it cannot rot."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_measures_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PY=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["dry_run"] and r["device_name"] == "cpu" and r["machine"]["torch"]
    assert set(r["nb201_train"]) == {"K1_fp32", "K1_bf16", "K4_fp32", "K4_bf16"}
    assert all(v["images_per_s"] > 0 for v in r["nb201_train"].values())
    assert r["simplex_step"]["supernet_step_ms"] > 0
    for strategy in ("batched", "sequential", "threaded"):  # every strategy runs on the CPU
        assert r["simplex_step"][strategy]["ratio_to_supernet_step"] > 0, r["simplex_step"][strategy]
    assert r["nb201_score"]["images_per_s"] > 0
    assert r["mbv2_step"]["K8"]["ms_per_step"] > 0 and r["mbv2_step"]["K1"]["peak_mb_above_start"] > 0
