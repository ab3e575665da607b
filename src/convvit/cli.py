"""The ``convvit`` command.

Model inspection (``info``, ``models``) and weight conversion (``convert``) live here; training,
evaluation, prediction and export (``fit``, ``validate``, ``test``, ``predict``, ``export``) are
forwarded to :mod:`convvit.training.cli` (LightningCLI conventions).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

TRAINING_COMMANDS = ("fit", "validate", "test", "predict", "export")
# Commands that are modules of their own: main(argv) -> exit status.
MODULE_COMMANDS = {
    "sweep": ("convvit.sweep.cli", "stability sweep: (lr, wd) trials per model and optimizer -> results.csv"),
    "plot": ("convvit.plots_cli", "plots of a sweep or runs: edf, lrwd, curves (PNG + CSV)"),
}


def _complexity_row(name: str, img_size: int | None, in_chans: int | None) -> dict:
    from convvit.models.complexity import count_complexity

    return count_complexity(name, img_size=img_size, in_chans=in_chans)


def _fmt_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    widths = [max(len(title), *(len(str(r[key])) for r in rows)) for key, title in columns]
    lines = ["  ".join(title.ljust(w) if i == 0 else title.rjust(w) for i, ((_, title), w) in enumerate(zip(columns, widths)))]
    for r in rows:
        lines.append("  ".join(str(r[k]).ljust(w) if i == 0 else str(r[k]).rjust(w) for i, ((k, _), w) in enumerate(zip(columns, widths))))
    return "\n".join(lines)


def _display_row(name: str, cx: dict, size: int | tuple) -> dict:
    from convvit.models.complexity import PUBLISHED_COMPLEXITY

    row = dict(
        model=name,
        size=size if isinstance(size, int) else f"{size[0]}x{size[1]}" if size[0] != size[1] else size[0],
        params=f"{cx['params'] / 1e6:.2f}",
        flops=f"{cx['flops'] / 1e9:.3f}",
        acts=f"{cx['acts'] / 1e6:.2f}",
        paper="",
    )
    if name in PUBLISHED_COMPLEXITY and size in (224, (224, 224)):
        f, p, a = PUBLISHED_COMPLEXITY[name]
        row["paper"] = f"{f} / {p} / {a}"
    return row


_COLUMNS = [
    ("model", "model"), ("size", "img"), ("params", "params (M)"), ("flops", "flops (G)"),
    ("acts", "acts (M)"), ("paper", "paper G / M / M"),
]


def cmd_info(args: argparse.Namespace) -> int:
    import convvit

    cx = _complexity_row(args.model, args.img_size, args.in_chans)
    if args.json:
        print(json.dumps(dict(model=args.model, **cx)))
        return 0
    cfg = convvit.default_cfg(args.model)
    size = args.img_size or cfg["input_size"][1]
    print(_fmt_table([_display_row(args.model, cx, size)], _COLUMNS))
    print("flops are multiply-adds (the paper's convention); acts are output elements of convs, linears and matmuls.")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import convvit

    names = convvit.list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; `convvit models` lists them all", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        size = args.img_size or convvit.default_cfg(name)["input_size"][1]
        rows.append(_display_row(name, _complexity_row(name, args.img_size, None), size))
    if args.json:
        print(json.dumps(rows))
    else:
        print(_fmt_table(rows, _COLUMNS))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from convvit.models.weights import convert_checkpoint

    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.img_size is not None:
        kwargs["img_size"] = args.img_size
    dst = convert_checkpoint(args.src, args.dst, args.model, **kwargs)
    print(f"wrote {dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from convvit import __version__

    parser = argparse.ArgumentParser(
        prog="convvit",
        description="Vision transformers with convolutions: inspect, train, evaluate, predict, export.",
        epilog="Training commands (LightningCLI; see `convvit fit --help`): " + ", ".join(TRAINING_COMMANDS),
    )
    parser.add_argument("--version", action="version", version=f"convvit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="params, flops and acts of one model (paper convention)")
    p.add_argument("model")
    p.add_argument("--img-size", "--img_size", type=int, default=None, dest="img_size")
    p.add_argument("--in-chans", "--in_chans", type=int, default=None, dest="in_chans")
    p.add_argument("--json", action="store_true", help="print one JSON object with integer params, flops, acts")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list models (shell-style PATTERN) with their complexity")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--img-size", "--img_size", type=int, default=None, dest="img_size")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("convert", help="convert a timm / official / Hugging Face checkpoint to convvit .safetensors")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--model", required=True, help="convvit model name the weights are for")
    p.add_argument("--num-classes", "--num_classes", type=int, default=None, dest="num_classes")
    p.add_argument("--img-size", "--img_size", type=int, default=None, dest="img_size")
    p.set_defaults(func=cmd_convert)

    for name in TRAINING_COMMANDS:
        sub.add_parser(name, help=f"{name} (LightningCLI; `convvit {name} --help`)", add_help=False)
    for name, (_, help_) in MODULE_COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TRAINING_COMMANDS:
        from convvit.training.cli import main as training_main

        return training_main(argv)
    if argv and argv[0] in MODULE_COMMANDS:
        import importlib

        return importlib.import_module(MODULE_COMMANDS[argv[0]][0]).main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"convvit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
