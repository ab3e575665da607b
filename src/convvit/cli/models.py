"""``convvit models [PATTERN]``: registered models with their params, flops and acts (paper convention)."""
from __future__ import annotations

import argparse
import json
import sys

from convvit.cli._shared import model_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--img-size", "--img_size", type=int, default=None, dest="img_size")
    p.add_argument("--json", action="store_true")


def complexity_row(name: str, img_size: int | None, in_chans: int | None) -> dict:
    from convvit.models.complexity import count_complexity

    return count_complexity(name, img_size=img_size, in_chans=in_chans)


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    widths = [max(len(title), *(len(str(r[key])) for r in rows)) for key, title in columns]
    lines = ["  ".join(title.ljust(w) if i == 0 else title.rjust(w)
                       for i, ((_, title), w) in enumerate(zip(columns, widths)))]
    for r in rows:
        lines.append("  ".join(str(r[k]).ljust(w) if i == 0 else str(r[k]).rjust(w)
                               for i, ((k, _), w) in enumerate(zip(columns, widths))))
    return "\n".join(lines)


def display_row(name: str, cx: dict, size: int | tuple) -> dict:
    import convvit
    from convvit.models.complexity import published_figures

    row = dict(
        model=name,
        size=size if isinstance(size, int) else f"{size[0]}x{size[1]}" if size[0] != size[1] else size[0],
        params=f"{cx['params'] / 1e6:.2f}",
        flops=f"{cx['flops'] / 1e9:.3f}",
        acts=f"{cx['acts'] / 1e6:.2f}",
        paper="",
    )
    published = published_figures(name)
    default_size = convvit.default_cfg(name)["input_size"][1]
    if published and size in (default_size, (default_size, default_size)):
        figures = (published.get(k) for k in ("flops_g", "params_m", "acts_m"))
        row["paper"] = " / ".join("-" if v is None else str(v) for v in figures)
    return row


COLUMNS = [
    ("model", "model"), ("size", "img"), ("params", "params (M)"), ("flops", "flops (G)"),
    ("acts", "acts (M)"), ("paper", "paper G / M / M"),
]


@model_arguments
def run(args: argparse.Namespace) -> int:
    import convvit

    names = convvit.list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; `convvit models` lists them all", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        size = args.img_size or convvit.default_cfg(name)["input_size"][1]
        rows.append(display_row(name, complexity_row(name, args.img_size, None), size))
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_table(rows, COLUMNS))
    return 0
