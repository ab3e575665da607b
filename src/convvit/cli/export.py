"""``convvit export --ckpt_path CKPT --format onnx|safetensors``: a trained checkpoint, exported and verified."""
from __future__ import annotations

import argparse

DESCRIPTION = ("Export a trained checkpoint to ONNX or .safetensors. An ONNX file is run "
        "with onnxruntime against PyTorch before it is written, and the max difference printed.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt_path", "--ckpt-path", required=True, help="checkpoint written by `convvit fit`")
    p.add_argument("--format", required=True, choices=("onnx", "safetensors"))
    p.add_argument("--output", "-o", default=None,
                   help="file or folder to write to (default: the checkpoint path with the format's suffix)")
    p.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto")
    p.add_argument("--force", action="store_true", help="replace --output even if it is a read-only file")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest accepted |logit difference| onnxruntime vs PyTorch (default: 1e-4; a correct "
                        "export differs by about 1e-6)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: 18)")


def run(args: argparse.Namespace) -> int:
    from convvit.inference.export import ONNX_TOLERANCE, export_checkpoint

    tolerance = ONNX_TOLERANCE if args.tolerance is None else args.tolerance
    exported = export_checkpoint(args.ckpt_path, args.format, args.output, args.weights, tolerance, args.opset,
                                 force=args.force)
    print(f"wrote {exported.path}")
    if args.format == "onnx":
        if exported.max_diff is None:
            print("not checked against PyTorch: onnxruntime is not installed (pip install onnxruntime)")
        else:
            print(f"onnxruntime matches PyTorch: max |logit difference| {exported.max_diff:.2g} "
                  f"(tolerance {tolerance:g})")
    return 0
