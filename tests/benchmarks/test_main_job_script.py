"""benchmarks/main_job.py never replaces the recorded benchmarks/results/main_job.csv unless told to."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "main_job.py"


def test_a_run_must_name_its_output():
    recorded = SCRIPT.parent / "results" / "main_job.csv"
    before = recorded.read_bytes()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "vit_c"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "name the output: --output benchmarks/results/main_job.csv" in proc.stderr
    assert recorded.read_bytes() == before
