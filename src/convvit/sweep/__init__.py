"""Stability sweeps (``convvit sweep``): seeded log-uniform (lr, wd) trials per model and optimizer, each an
ordinary ``convvit fit`` run, on a local process pool or Ray Tune, resumable, recorded in ``results.csv``.

    from convvit.sweep import SweepSpec, run_sweep, read_results
    run_sweep(SweepSpec(config="base.yaml", models=["vit_c_nano_32px"], optimizers=["adamw"], samples=8,
                        out="sweeps/demo", overrides=["--trainer.max_epochs", "2"]))
"""
from convvit.sweep.results import COLUMNS, read_manifest, read_results, write_results
from convvit.sweep.space import Range, SweepError, Trial, make_trials

__all__ = [
    "COLUMNS", "Range", "SweepError", "SweepSpec", "Sweep", "Trial", "make_trials", "read_manifest",
    "read_results", "run_sweep", "write_results",
]


def __getattr__(name: str):
    # the runner pulls in Lightning (through the trial callback): loaded when asked for, not on import
    if name in ("SweepSpec", "Sweep", "run_sweep"):
        from convvit.sweep import core

        return getattr(core, name)
    raise AttributeError(f"module 'convvit.sweep' has no attribute {name!r}")
