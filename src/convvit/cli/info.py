"""``convvit info MODEL``: params, flops and acts of one model (paper convention)."""
from __future__ import annotations

import argparse
import json

from convvit.cli._shared import model_arguments
from convvit.cli.models import COLUMNS, complexity_row, display_row, format_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--img-size", "--img_size", type=int, default=None, dest="img_size")
    p.add_argument("--in-chans", "--in_chans", type=int, default=None, dest="in_chans")
    p.add_argument("--json", action="store_true", help="print one JSON object with integer params, flops, acts")


@model_arguments
def run(args: argparse.Namespace) -> int:
    import convvit

    cx = complexity_row(args.model, args.img_size, args.in_chans)
    if args.json:
        print(json.dumps(dict(model=args.model, **cx)))
        return 0
    cfg = convvit.default_cfg(args.model)
    size = args.img_size or cfg["input_size"][1]
    print(format_table([display_row(args.model, cx, size)], COLUMNS))
    print("flops are multiply-adds (the paper's convention); acts are output elements of convs, linears and matmuls.")
    return 0
