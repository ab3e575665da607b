"""``convvit sweep``: the paper's stability study -- (lr, wd) samples per model and optimizer, each an ordinary
``convvit fit`` -- on this machine or a Ray cluster. A command module: :func:`build_parser`, :func:`run`,
:func:`main`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "run", "main", "run_argv"]

PROG = "convvit sweep"
_EXAMPLE = """\
example:
  convvit sweep --config configs/fashion_mnist/vit_c.yaml --models vit_c_nano_32px,vit_p_nano_32px \\
      --optimizers adamw,sgd --samples 16 --out sweeps/fmnist --parallel 2 --trainer.max_epochs 2
  (the same command again resumes it; `convvit plot edf sweeps/fmnist` draws it)

Options not listed above (--trainer.max_epochs 2, --data.batch_size 64, ...) go to every trial's `convvit fit`.
Unless the base config or those options say otherwise, trials hold 10% of the training set out for validation
(--data.val_fraction 0.1), validate every epoch and do not touch the test split: results.csv ranks trials by
validation error.
"""


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False, epilog=_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train each model and optimizer at (lr, wd) pairs drawn log-uniformly (seeded, the same "
                    "pairs for every model) and write OUT/results.csv. Resumable: the same command skips "
                    "finished trials.",
    )
    p.add_argument("--config", required=True, metavar="BASE.yaml",
                   help="the `convvit fit` config every trial starts from")
    p.add_argument("--models", required=True, type=_names, help="comma-separated model names (`convvit models`)")
    p.add_argument("--optimizers", type=_names, default=["adamw"], help="comma-separated: adamw, sgd (default: adamw)")
    p.add_argument("--samples", type=int, default=16, help="(lr, wd) samples per optimizer (default 16; the paper: 64)")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder: results.csv, runs/, logs/")
    p.add_argument("--lr", action="append", default=[], metavar="[OPT=]LOW,HIGH",
                   help="lr range (default: 1/8x..4x the good value: the base config's for its optimizer, the "
                        "paper's otherwise); OPT= limits it to one optimizer; repeat for several")
    p.add_argument("--wd", action="append", default=[], metavar="[OPT=]LOW,HIGH", help="weight decay range, as --lr")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; sample i trains with seed SEED+i (default 0)")
    p.add_argument("--parallel", type=int, default=1, metavar="K", help="trials at a time (default 1)")
    p.add_argument("--cpus-per-trial", "--cpus_per_trial", type=int, default=None, dest="cpus_per_trial",
                   help="CPU threads per trial (default: the machine's cores / K)")
    p.add_argument("--gpus-per-trial", "--gpus_per_trial", type=float, default=0.0, dest="gpus_per_trial",
                   help="GPUs per trial (default 0)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: a process pool on this machine; ray: Ray Tune trials (pip install 'convvit[ray]')")
    p.add_argument("--address", default=None, help="with --engine ray: join this running cluster (e.g. auto, or "
                   "HEAD:6379); without it Ray is started on this machine")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also CONVVIT_DEBUG=1)")
    return p


def run(args: argparse.Namespace, overrides: Sequence[str], command: str = "") -> int:
    from convvit.sweep.core import SweepSpec, run_sweep

    spec = SweepSpec(
        config=args.config, models=args.models, optimizers=[o.lower() for o in args.optimizers],
        samples=args.samples, out=args.out, lr=args.lr, wd=args.wd, seed=args.seed, parallel=args.parallel,
        engine=args.engine, address=args.address, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, overrides=list(overrides),
    )
    return run_sweep(spec, command)


def main(argv: Sequence[str] | None = None) -> int:
    """``convvit sweep ARGS``; returns the exit status. Errors are one line, tracebacks only with --debug."""
    from convvit.errors import run_guarded
    from convvit.signals import interrupt_exit_code, interrupt_name, terminate_as_interrupt

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, overrides = parser.parse_known_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (already printed)
        return exit_.code if isinstance(exit_.code, int) else 0
    debug = args.debug or os.environ.get("CONVVIT_DEBUG", "") not in ("", "0")

    def sweep() -> int:
        try:
            with terminate_as_interrupt():  # a scheduler stopping the sweep: stop like Ctrl-C, and exit 143
                return run(args, overrides, command=shlex.join(["convvit", "sweep", *argv]))
        except KeyboardInterrupt as interrupt:
            print(f"{PROG}: interrupted ({interrupt_name(interrupt)}); the trials that were running stopped. Run "
                  "the same command again to resume", file=sys.stderr)
            return interrupt_exit_code(interrupt)

    # an unexpected failure of the sweep itself is one line too: the trials' own failures are in results.csv
    return run_guarded(sweep, debug, prog=PROG, summarise_bugs=True)


def run_argv(argv: Sequence[str]) -> int:
    """The dispatcher's entry (``argv[0]`` is ``sweep``)."""
    return main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
