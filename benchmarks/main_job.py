"""Main job: `convvit fit` on Fashion-MNIST with the ViT_C config and its ViT_P twin; wall time and test top-1.

    python benchmarks/main_job.py                     # both configs, one after the other
    python benchmarks/main_job.py --models vit_c      # only ViT_C

Each run is the real command line (a fresh process: imports, data loading, training, the end-of-fit test),
timed from start to exit. Prints a table and writes benchmarks/results/main_job.csv.
"""
from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"vit_c": ROOT / "configs/fashion_mnist/vit_c.yaml", "vit_p": ROOT / "configs/fashion_mnist/vit_p.yaml"}
GOAL_ACC, GOAL_SECONDS = 91.0, 600.0
_TEST_LINE = re.compile(r"test top-1 ([\d.]+)%\s+top-5 ([\d.]+)%")


def run(config: Path, root: Path, extra: list[str]) -> dict[str, object]:
    cmd = [sys.executable, "-m", "convvit.cli", "fit", "--config", str(config),
           "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false", *extra]
    start = time.perf_counter()  # the user's environment as is (no thread tuning), like the README command
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    match = _TEST_LINE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{config.name}: convvit fit failed (exit {proc.returncode})")
    return {"config": str(config.relative_to(ROOT)), "seconds": round(seconds, 1),
            "test_top1": float(match.group(1)), "test_top5": float(match.group(2))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["vit_c", "vit_p"])
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/main_job.csv"))
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="further `convvit fit` options after --")
    args = parser.parse_args()
    extra = [a for a in args.extra if a != "--"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="convvit-main-job-") as tmp:
        for model in args.models:
            row = {"model": model, **run(CONFIGS[model], Path(tmp), extra)}
            ok = row["test_top1"] >= GOAL_ACC and row["seconds"] <= GOAL_SECONDS
            row["goal_met"] = ok
            rows.append(row)
            print(f"{model}: test top-1 {row['test_top1']:.2f}%  top-5 {row['test_top5']:.2f}%  "
                  f"wall {row['seconds']:.0f} s  (goal >= {GOAL_ACC}% in <= {GOAL_SECONDS:.0f} s: "
                  f"{'met' if ok else 'NOT met'})", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
