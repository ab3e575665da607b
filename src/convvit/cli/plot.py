"""``convvit plot edf|lrwd|curves``: figures of a sweep or of runs, each a PNG with its CSV beside it.
A command module: :func:`build_parser`, :func:`run`, :func:`main`.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "run", "main", "run_argv"]

PROG = "convvit plot"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="Plots of a `convvit sweep` folder or of `convvit fit` runs: a PNG and, beside it, a CSV of "
                    "the numbers drawn. Errors are top-1 %% on the validation split.",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also CONVVIT_DEBUG=1)")
    sub = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    metric = dict(choices=("final", "best"), default="final",
                  help="each run's error: at the end of training (final, default) or its lowest validation error")

    e = sub.add_parser("edf", help="error distribution functions per model and optimizer (relative and absolute)")
    e.add_argument("sweep", metavar="DIR", help="a `convvit sweep --out` folder")
    e.add_argument("--metric", **metric)
    e.add_argument("--out", default=None, metavar="PNG", help="default: DIR/plots/edf.png")

    w = sub.add_parser("lrwd", help="error over the (lr, wd) plane, with bootstrap ranges of the best lr and wd")
    w.add_argument("sweep", metavar="DIR", help="a `convvit sweep --out` folder")
    w.add_argument("--metric", **metric)
    w.add_argument("--out", default=None, metavar="PNG", help="default: DIR/plots/lrwd.png")
    w.add_argument("--reps", type=int, default=2500, help="bootstrap resamples (default 2500, as pycls)")
    w.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")

    c = sub.add_parser("curves", help="validation error against epoch, one line per run")
    c.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories (runs/NAME/version_N); a sweep folder stands for its best run per model "
                        "and optimizer")
    c.add_argument("--metric", **metric)
    c.add_argument("--out", default=None, metavar="PNG",
                   help="default: SWEEP/plots/curves.png for one sweep folder, else curves.png")
    return p


def run(args: argparse.Namespace) -> int:
    from convvit import plots

    if args.kind == "edf":
        png, table = plots.plot_edf(args.sweep, args.out, args.metric)
        print(f"wrote {png} and {table}")
    elif args.kind == "lrwd":
        png, table, ranges_csv, ranges = plots.plot_lrwd(args.sweep, args.out, args.metric, args.reps, args.seed)
        print("best lr and wd, bootstrap over the runs (2.5 / 50 / 97.5 percentiles):")
        for r in ranges:
            print(f"  {r['model']} {r['optimizer']} {r['param']}: {r['p2.5']:.3g} / {r['p50']:.3g} / {r['p97.5']:.3g}"
                  f"  (best run {r['best_run']:.3g}, n={r['n']})")
        print(f"wrote {png}, {table} and {ranges_csv}")
    else:
        items: list = []
        for path in args.runs:
            items += plots.sweep_best_runs(path, args.metric) if plots.is_sweep(path) else [path]
        out = args.out
        if out is None:
            sweeps = [p for p in args.runs if plots.is_sweep(p)]
            out = Path(sweeps[0]) / "plots" / "curves.png" if len(args.runs) == 1 and sweeps else Path("curves.png")
        png, table = plots.plot_curves(items, out)
        print(f"wrote {png} and {table}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``convvit plot KIND ...``; returns the exit status. Errors are one line, tracebacks only with --debug."""
    from convvit.errors import run_guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    debug = args.debug or os.environ.get("CONVVIT_DEBUG", "") not in ("", "0")
    return run_guarded(lambda: run(args), debug, prog=f"{PROG} {args.kind}", summarise_bugs=True)


def run_argv(argv: Sequence[str]) -> int:
    """The dispatcher's entry (``argv[0]`` is ``plot``)."""
    return main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
