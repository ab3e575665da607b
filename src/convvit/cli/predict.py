"""``convvit predict --ckpt_path CKPT PATH...``: classify images with a trained checkpoint, top-k to a CSV."""
from __future__ import annotations

import argparse

from convvit.cli._shared import add_precision_argument, precision_line, warnings_to_stderr
from convvit.errors import ConvvitError, UsageError

DESCRIPTION = ("Classify images with a trained checkpoint; writes a CSV of top-k "
        "predictions. Unreadable images are skipped with a warning naming each one.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--ckpt_path", "--ckpt-path", required=True, help="checkpoint written by `convvit fit`")
    p.add_argument("--output", "-o", default="predictions.csv",
                   help="CSV file to write, or a folder to write predictions.csv in (default: predictions.csv)")
    p.add_argument("--force", action="store_true", help="replace --output even if it is a read-only file")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when any image could not be read (the CSV is still written)")
    p.add_argument("--top_k", "--top-k", type=int, default=5, help="predictions per image (default: 5)")
    p.add_argument("--batch_size", "--batch-size", type=int, default=None,
                   help="images per forward pass (default: the fastest measured, convvit.inference.runner)")
    p.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto",
                   help="raw or EMA weights; auto: EMA when it validated at least as well (default)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    add_precision_argument(p)


def run(args: argparse.Namespace) -> int:
    from convvit.inference.predict import predict_images, write_predictions
    from convvit.inference.runner import DEFAULT_BATCH_SIZE

    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    with warnings_to_stderr():
        result = predict_images(args.ckpt_path, args.paths, args.top_k, args.batch_size or DEFAULT_BATCH_SIZE,
                                args.weights, args.device, args.precision)
    print(precision_line(args.precision, result.precision, result.precision_reason))
    if not result.rows:
        raise ConvvitError(
            f"none of the {len(result.skipped)} images could be read (each is named above); no CSV was written. "
            "Fix: check that the files are images, e.g. open one in an image viewer"
        )
    out = write_predictions(result.rows, args.output, args.top_k, force=args.force)
    skipped = f"; skipped {len(result.skipped)} unreadable image(s), named above" if result.skipped else ""
    print(f"wrote {len(result.rows)} predictions to {out}{skipped}")
    if args.strict and result.skipped:
        raise ConvvitError(
            f"{len(result.skipped)} image(s) could not be read (--strict), e.g. '{result.skipped[0][0]}'. "
            "Fix: replace or delete them, or leave out --strict"
        )
    return 0
