"""``convvit convert SRC DST --model NAME``: any checkpoint convvit reads, as convvit ``.safetensors``."""
from __future__ import annotations

import argparse

from convvit.cli._shared import model_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--model", required=True, help="convvit model name the weights are for")
    p.add_argument("--num-classes", "--num_classes", type=int, default=None, dest="num_classes")
    p.add_argument("--img-size", "--img_size", type=int, default=None, dest="img_size")


@model_arguments
def run(args: argparse.Namespace) -> int:
    from convvit.models.checkpoints import convert_checkpoint

    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.img_size is not None:
        kwargs["img_size"] = args.img_size
    dst = convert_checkpoint(args.src, args.dst, args.model, **kwargs)
    print(f"wrote {dst}")
    return 0
