"""``convvit explain``: draw what a trained checkpoint attends to.

    convvit explain --ckpt_path CKPT IMAGE... --output DIR [--head_fusion mean] [--discard_ratio 0.9] [--top_k 3]
    convvit explain distance --ckpt_path CKPT [CKPT...] --data IMAGES_DIR|DATASET --output OUT.png

The first writes ``DIR/<image>.png`` per image (the image with its top-k predictions, the attention
rollout over it; conv stem channels for ViT_C, the GPSA gates for ConViT, the last stage's class-token
attention for CvT) and ``DIR/<image>.csv`` (the rollout per patch). The second plots the mean
attention distance of every head against depth, one panel per checkpoint, with ``OUT.csv`` beside it.

Everything is read and checked before anything is written, and each file is written atomically, so a
bad checkpoint, an unreadable image or an unwritable output leaves no half-written result.
The module is one command (``build_parser`` + ``run(argv) -> int``) for the ``convvit`` dispatcher.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from convvit.cli._shared import add_precision_argument, precision_line
from convvit.errors import ArgumentParser, ConvvitError, UsageError, debug_requested, run_guarded

__all__ = ["build_parser", "build_distance_parser", "run"]


class ExplainError(ConvvitError):
    """A checkpoint, image or output ``convvit explain`` cannot use."""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="convvit explain",
        description="Attention rollout and family-specific maps of a trained checkpoint, one PNG per image. "
        "`convvit explain distance --help`: mean attention distance against depth.",
    )
    parser.add_argument("--ckpt_path", "--ckpt-path", required=True, help="a checkpoint written by `convvit fit`")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders (any mode and size)")
    parser.add_argument("--output", "-o", required=True,
                        help="folder for <image>.png and <image>.csv; for one image, a .png file (its CSV beside it)")
    parser.add_argument("--head_fusion", "--head-fusion", choices=("mean", "max", "min"), default="mean")
    parser.add_argument("--discard_ratio", "--discard-ratio", type=float, default=0.9,
                        help="share of the weakest patch-to-patch attention zeroed before the rollout (default 0.9)")
    parser.add_argument("--top_k", "--top-k", type=int, default=3)
    parser.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto")
    add_precision_argument(parser)
    return parser


def build_distance_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="convvit explain distance",
        description="Mean attention distance (pixels) of every head against depth, one panel per checkpoint.",
    )
    parser.add_argument("--ckpt_path", "--ckpt-path", required=True, nargs="+",
                        help="one or more `convvit fit` checkpoints")
    parser.add_argument("--data", required=True,
                        help="a folder of images (searched recursively) to average over, or the name of an in-memory "
                        "dataset (fashion_mnist, cifar10, cifar100) read from its default path")
    parser.add_argument("--split", choices=("train", "test"), default="test",
                        help="with a dataset name: the split whose images are used (default test)")
    parser.add_argument("--num_images", "--num-images", type=int, default=1000,
                        help="with a dataset name: how many of the split's images, from the first (default 1000)")
    parser.add_argument("--output", "-o", required=True, help="the PNG to write; the CSV goes beside it")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=32)
    parser.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto")
    add_precision_argument(parser)
    return parser


# ----------------------------------------------------------------------------------- inputs and outputs


def _load(ckpt_path: str, weights: str, precision: str):
    """The checkpoint's model as an :class:`~convvit.inference.runner.InferenceModel` (on the CPU, in ``precision``),
    and its info; the resolved precision is printed, as by predict."""
    from convvit.inference.runner import InferenceModel
    from convvit.inference.trained import load_trained_model

    model, info = load_trained_model(ckpt_path, weights)
    from convvit.explain import attention_modules

    if not attention_modules(model):
        raise ExplainError(f"{ckpt_path}: model {info['name']} has no attention layers to explain. "
                           "Fix: pass a checkpoint of a transformer (vit_*, deit_*, convit_*, cvt_*)")
    height, width = info["img_size"]
    if height != width:
        raise ExplainError(f"{ckpt_path}: explain needs a square input size, the model takes {height}x{width}")
    inference = InferenceModel(model, "cpu", precision)
    print(precision_line(precision, inference.precision, inference.reason))
    return inference, info


def _read_images(paths: Sequence[Path], info, transform):
    """All images as tensors, or one clear error for the first that cannot be read (nothing is written yet)."""
    from convvit.data import BadImageError, load_image

    tensors = []
    for path in paths:
        try:
            tensors.append(transform(load_image(path, info["in_chans"])))
        except BadImageError as err:
            reason = str(err.__cause__ or err)
            raise ExplainError(f"cannot read image {path}: {reason}. Fix: pass image files PIL can open") from err
    return tensors


def _writable_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and check a file can be written there, before any work is done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ExplainError(f"cannot write to {folder}: {err.strerror or err}. "
                           "Fix: choose an --output folder you can write") from err
    return folder


def _list_images(paths: Sequence[str]) -> list[Path]:
    from convvit.data import list_images

    files = list_images(list(paths))
    if not files:
        raise ExplainError(f"no images found in {', '.join(paths)}. Fix: pass image files or a folder holding some")
    return files


def _dataset_images(name: str, split: str, count: int):
    """The first ``count`` images of a registered in-memory dataset's split, as PIL images, or None when ``name``
    is not such a dataset (it is then taken for a path)."""
    from PIL import Image

    from convvit.data.registry import get_dataset

    try:
        spec = get_dataset(name)
    except ValueError:
        return None
    if spec.kind != "tensors":
        return None
    root = Path(spec.path or ".")
    try:
        images, _ = spec.read(root, split)
    except (FileNotFoundError, OSError) as err:
        raise ExplainError(f"cannot read the {spec.name} {split} split under {root}: {err}. Fix: install it (see "
                           "the README) or pass a folder of images") from err
    images = images[:count]
    # (N, C, H, W) uint8 -> PIL, so that a dataset goes through the checkpoint's own transform like image files
    return [Image.fromarray(x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()) for x in images]


def _display(tensor, mean, std):
    """A normalised (C, H, W) tensor back to an image array (H, W[, 3]) in [0, 1]: what the model saw."""
    import torch

    mean = torch.tensor(mean[: tensor.shape[0]]).view(-1, 1, 1)
    std = torch.tensor(std[: tensor.shape[0]]).view(-1, 1, 1)
    image = (tensor * std + mean).clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).numpy()


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output names from the images' names; a repeated name gets its position in front."""
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else f"{i:03d}_{s}" for i, s in enumerate(stems)]


# ----------------------------------------------------------------------------------- family extras


def _as_arrays(panels: dict) -> dict:
    """A family's panels (tensors, or tuples of them) as the numpy arrays the figure draws."""
    def array(value):
        return tuple(array(v) for v in value) if isinstance(value, tuple) else value.float().cpu().numpy()

    return {name: array(value) for name, value in panels.items()}


# ----------------------------------------------------------------------------------- commands


def explain_images(args) -> int:
    import torch

    from convvit.explain.figures import explain_figure, save_png, write_csv
    from convvit.explain.maps import explain_image, rollout
    from convvit.inference.trained import eval_transform

    if not 0.0 <= args.discard_ratio < 1.0:
        raise UsageError(f"--discard_ratio must be in [0, 1), got {args.discard_ratio}")
    if args.top_k < 1:
        raise UsageError(f"--top_k must be >= 1, got {args.top_k}")
    inference, info = _load(args.ckpt_path, args.weights, args.precision)
    model = inference.model
    transform, mean, std = eval_transform(model, info)
    paths = _list_images(args.images)
    output = Path(args.output)
    one_file = output.suffix.lower() == ".png" and not output.is_dir()  # one figure, and its CSV beside it
    if one_file and len(paths) != 1:
        raise UsageError(f"--output {output} names a PNG file, but the {len(paths)} images give one figure each. "
                         f"Fix: give a folder, e.g. --output {output.with_suffix('')}")
    tensors = _read_images(paths, info, transform)
    if one_file:
        targets = [output]
    else:
        out = _writable_dir(output)
        targets = [out / f"{stem}.png" for stem in _unique_stems(paths)]
    top_k = min(args.top_k, info["num_classes"])
    names = info["class_names"]
    written = []
    for path, png, image in zip(paths, targets, tensors):
        x = inference.inputs(image[None])  # (1, C, H, W): one image at a time keeps the memory of the maps small
        seen = explain_image(model, x)  # one forward pass: logits, attention maps and the family's panels
        with torch.no_grad():
            probs = seen.logits.float().softmax(dim=-1)[0]
            heat = rollout(seen.maps, args.head_fusion, args.discard_ratio)[0]
        grid = seen.maps.infos[-1].grid
        heat = heat.reshape(grid)
        top_p, top_i = probs.topk(top_k)
        predictions = [(names[i], p) for p, i in zip(top_p.tolist(), top_i.tolist())]
        fig = explain_figure(
            _display(image, mean, std), f"{path.name} ({info['name']})", predictions, heat.numpy(),
            f"rollout ({args.head_fusion}, discard {args.discard_ratio:g})", **_as_arrays(seen.panels),
        )
        write_csv(png.with_suffix(".csv"), ["row", "col", "rollout"],
                  [(r, c, heat[r, c].item()) for r in range(grid[0]) for c in range(grid[1])], float_format=".6g")
        written.append(save_png(fig, png))
        print(f"{path}: {predictions[0][0]} {predictions[0][1]:.1%} -> {written[-1]}")
    return 0


def explain_distance(args) -> int:
    import numpy as np
    import torch

    from convvit.explain.figures import distance_figure, save_png, write_csv
    from convvit.explain.maps import attention_distance, attention_maps
    from convvit.inference.trained import eval_transform

    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise UsageError(f"--output {output} must name a .png file (the CSV is written beside it)")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.num_images < 1:
        raise UsageError(f"--num_images must be >= 1, got {args.num_images}")
    loaded = [(ckpt, *_load(ckpt, args.weights, args.precision)) for ckpt in args.ckpt_path]
    dataset = None if Path(args.data).exists() else _dataset_images(args.data, args.split, args.num_images)
    paths = _list_images([args.data]) if dataset is None else None
    _writable_dir(output.parent if str(output.parent) else Path("."))
    panels, rows = [], []
    for ckpt, inference, info in loaded:
        model = inference.model
        transform, _, _ = eval_transform(model, info)
        if dataset is None:
            tensors = _read_images(paths, info, transform)
        else:
            tensors = [transform(image.convert("L" if info["in_chans"] == 1 else "RGB")) for image in dataset]
        total, count = None, 0
        for start in range(0, len(tensors), args.batch_size):
            batch = inference.inputs(torch.stack(tensors[start:start + args.batch_size]))
            with torch.no_grad():
                dist = attention_distance(attention_maps(model, batch)).double() * len(batch)  # (layers, heads)
            total = dist if total is None else total + dist
            count += len(batch)
        mean_dist = (total / count).numpy()
        title = f"{Path(ckpt).name}: {info['name']} ({count} images)"
        panels.append((title, mean_dist))
        for layer, heads in enumerate(mean_dist, start=1):
            rows += [(ckpt, info["name"], layer, head, float(d)) for head, d in enumerate(heads) if not np.isnan(d)]
        print(f"{ckpt}: {info['name']}, {mean_dist.shape[0]} layers, mean distance "
              f"{np.nanmean(mean_dist[0]):.1f} px (first) -> {np.nanmean(mean_dist[-1]):.1f} px (last)")
    csv_path = output.with_suffix(".csv")
    write_csv(csv_path, ["checkpoint", "model", "layer", "head", "distance_px"], rows, float_format=".4f")
    save_png(distance_figure(panels), output)
    print(f"wrote {output} and {csv_path}")
    return 0


def run(argv: Sequence[str]) -> int:
    """Run ``convvit explain`` (``argv`` without the word ``explain``) under the error policy; the exit status."""
    argv = list(argv)
    debug = debug_requested(argv)

    def main() -> int:
        if argv and argv[0] == "distance":
            return explain_distance(build_distance_parser().parse_args(argv[1:]))
        return explain_images(build_parser().parse_args(argv))

    return run_guarded(main, debug)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
