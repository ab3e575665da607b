"""Top-1 agreement of bf16 with fp32 inference on a dataset's test split, through a trained checkpoint.

Every image goes through ``convvit predict``'s path (the checkpoint's eval transform, then
:class:`convvit.inference.runner.InferenceModel`) once in fp32 and once in bf16 weights (what ``--precision bf16`` and
a bf16 ``auto`` run), and, for comparison, once under bf16 autocast over fp32 weights. Written: one row per bf16 mode
with the share of images whose top-1 class is the same as fp32's, and each mode's accuracy.

    convvit fit --config configs/fashion_mnist/vit_c.yaml --trainer.max_epochs 1
    python benchmarks/bf16_agreement.py --ckpt_path runs/fashion_mnist-vit_c_nano_32px/version_0/checkpoints/last.ckpt
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path

import torch

from convvit.data import build_eval_transform
from convvit.data.registry import get_dataset
from convvit.inference.runner import InferenceModel
from convvit.inference.trained import load_trained_model
from convvit.precision import cpu_bf16_flags, cpu_model_name


def eval_tensors(info: dict, model: torch.nn.Module, dataset: str, split: str, limit: int | None):
    """The split's images through the checkpoint's eval transform (as predict reads files), and the labels."""
    from PIL import Image

    spec = get_dataset(dataset)
    images, labels = spec.read(Path(spec.path or "."), split)
    images, labels = images[:limit], labels[:limit]
    mean, std = info["mean"] or model.pretrained_cfg["mean"], info["std"] or model.pretrained_cfg["std"]
    transform = build_eval_transform(info["img_size"][0], info["in_chans"], mean, std, info["crop_pct"],
                                     info["interpolation"])
    mode = "L" if info["in_chans"] == 1 else "RGB"
    pil = (Image.fromarray(x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()) for x in images)
    return torch.stack([transform(image.convert(mode)) for image in pil]), labels


def top1(forward, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([forward(images[i:i + batch_size]).argmax(-1) for i in range(0, len(images), batch_size)])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="the first N images only (default: all)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--csv", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "bf16_agreement_fashion_mnist.csv")
    args = parser.parse_args(argv)
    command = "python benchmarks/bf16_agreement.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    model, info = load_trained_model(args.ckpt_path)
    images, labels = eval_tensors(info, model, args.dataset, args.split, args.limit)
    fp32 = InferenceModel(copy.deepcopy(model), precision="32")
    bf16 = InferenceModel(copy.deepcopy(model), precision="bf16")

    def autocast_forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32.logits(x)

    reference = top1(fp32.logits, images, args.batch_size)
    fp32_acc = (reference == labels).float().mean().item()
    rows = []
    for mode, forward in (("bf16 weights (--precision bf16)", bf16.logits), ("bf16 autocast, fp32 weights",
                                                                              autocast_forward)):
        start = time.perf_counter()
        pred = top1(forward, images, args.batch_size)
        agree = (pred == reference)
        rows.append(dict(
            dataset=args.dataset, split=args.split, images=len(labels), model=info["name"],
            checkpoint=args.ckpt_path, weights=info["weights"], mode=mode, fp32_top1=round(fp32_acc, 4),
            bf16_top1=round((pred == labels).float().mean().item(), 4), agreement=round(agree.float().mean().item(), 5),
            disagreements=int((~agree).sum()), seconds=round(time.perf_counter() - start, 1), cpu=cpu_model_name(),
            bf16_units=" ".join(cpu_bf16_flags()) or "none", torch=torch.__version__, command=command,
        ))
        r = rows[-1]
        print(f"{mode:32s} agreement {r['agreement']:.2%} ({r['disagreements']} of {r['images']} differ); "
              f"top-1 fp32 {r['fp32_top1']:.2%}, bf16 {r['bf16_top1']:.2%}", flush=True)
    from convvit.fileio import write_csv  # the one CSV writer: atomic, spreadsheet-safe cells

    print(f"wrote {write_csv(args.csv, list(rows[0]), rows)}")
    return rows


if __name__ == "__main__":
    main()
