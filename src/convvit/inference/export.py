"""Export a trained model (loaded by :mod:`convvit.inference.trained`) to .safetensors or ONNX, verified."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from convvit.checkpoints.files import atomic_write, save_weights
from convvit.errors import ExportMismatchError
from convvit.inference.trained import load_trained_model

__all__ = ["EXPORT_FORMATS", "ONNX_TOLERANCE", "Exported", "ExportMismatchError", "weights_metadata",
           "export_safetensors", "export_onnx", "check_onnx", "export_checkpoint"]

EXPORT_FORMATS = ("onnx", "safetensors")
# Largest |logit difference| accepted between onnxruntime and PyTorch. Measured differences are 4e-7 to 1e-6
# (fp32, operators fused in another order); a wrong graph is off by orders of magnitude more.
ONNX_TOLERANCE = 1e-4


@dataclass
class Exported:
    """A written export: its path and, for ONNX, the max |logit difference| onnxruntime vs PyTorch
    (None when onnxruntime is not installed)."""

    path: Path
    max_diff: float | None = None


def weights_metadata(info: dict[str, Any]) -> dict[str, str]:
    """String metadata for exported files: architecture, classes, input size and normalisation."""
    meta = {
        "architecture": info["name"],
        "num_classes": str(info["num_classes"]),
        "class_names": json.dumps(list(info["class_names"])),
        "in_chans": str(info["in_chans"]),
        "img_size": json.dumps(list(info["img_size"])),
        "weights": info.get("weights", "raw"),
    }
    for key in ("mean", "std"):
        if info.get(key) is not None:
            meta[key] = json.dumps(list(info[key]))
    for key in ("crop_pct", "interpolation"):
        if info.get(key) is not None:
            meta[key] = str(info[key])
    return meta


def export_safetensors(model: nn.Module, path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write the model's weights and :func:`weights_metadata` to ``path`` (.safetensors)."""
    save_weights(model, path, weights_metadata(info))
    return Path(path)


def export_onnx(
    model: nn.Module, path: str | os.PathLike, info: dict[str, Any], opset: int = 18,
    tolerance: float | None = ONNX_TOLERANCE,
) -> Exported:
    """Export ``model`` to ONNX with a dynamic batch axis: input ``images`` (B, C, H, W), output ``logits``.

    Uses the torch.export-based exporter when onnxscript is installed, else the TorchScript exporter.
    The class names and normalisation go into the model's metadata properties. Before the file is moved into
    place, :func:`check_onnx` compares it with ``model`` (unless ``tolerance`` is None): an export that
    disagrees by more than ``tolerance`` raises :class:`ExportMismatchError` and leaves no file.
    """
    model = model.eval()
    example = torch.randn(2, info["in_chans"], *info["img_size"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.export.tmp")
    try:
        import onnxscript  # noqa: F401

        dynamo = True
    except ImportError:
        dynamo = False
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(
                model, (example,), tmp, input_names=["images"], output_names=["logits"],
                dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, external_data=False,
            )
        else:
            torch.onnx.export(
                model, (example,), tmp, input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
            )
    try:
        data = _add_onnx_metadata(tmp.read_bytes(), weights_metadata(info))
    finally:
        tmp.unlink(missing_ok=True)
    max_diff = check_onnx(model, data, info, tolerance) if tolerance is not None else None
    with atomic_write(path) as f:
        f.write(data)
    return Exported(path, max_diff)


def check_onnx(
    model: nn.Module, onnx_model: bytes | str | os.PathLike, info: dict[str, Any], tolerance: float = ONNX_TOLERANCE,
    batch_size: int = 3,
) -> float | None:
    """Run ``onnx_model`` (bytes or a file) with onnxruntime and ``model`` with PyTorch on the same random batch;
    returns the max |logit difference|, or None when onnxruntime is not installed.

    The batch size differs from the export's example batch (2), so the dynamic batch axis is checked too.
    Raises :class:`ExportMismatchError` when the difference exceeds ``tolerance``.
    """
    try:
        import onnxruntime
    except ImportError:
        return None
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    x = torch.randn(batch_size, info["in_chans"], *info["img_size"], generator=torch.Generator().manual_seed(0))
    (ort_logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        logits = model.eval()(x).float()
    max_diff = (torch.from_numpy(ort_logits) - logits).abs().max().item()
    if not max_diff <= tolerance:  # also catches NaN
        raise ExportMismatchError(
            f"the ONNX export of {info['name']} disagrees with PyTorch: max |logit difference| {max_diff:.3g} on a "
            f"batch of {batch_size} exceeds {tolerance:g}; no file was written. Fix: try another --opset, or report "
            "this with the checkpoint; --tolerance raises the bound if the difference is acceptable to you"
        )
    return max_diff


def _add_onnx_metadata(data: bytes, meta: dict[str, str]) -> bytes:
    try:
        import onnx
    except ImportError:  # the metadata is a convenience; the model works without it
        return data
    proto = onnx.load_from_string(data)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def export_checkpoint(
    ckpt_path: str | os.PathLike,
    fmt: str,
    output: str | os.PathLike | None = None,
    weights: str = "auto",
    tolerance: float | None = ONNX_TOLERANCE,
    opset: int = 18,
    force: bool = False,
) -> Exported:
    """Export a ``convvit fit`` checkpoint to ``fmt`` ("onnx" or "safetensors") at ``output`` (default: the
    checkpoint's path with the format's suffix). ONNX exports are checked against PyTorch (:func:`check_onnx`).
    A read-only ``output`` is refused before any work, or replaced with ``force``."""
    from convvit.fileio import allow_replacing, refuse_read_only

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    model, info = load_trained_model(ckpt_path, weights)
    output = Path(output) if output is not None else Path(ckpt_path).with_suffix(f".{fmt}")
    if output.is_dir():  # like cp: a folder means "in there", under the checkpoint's name
        output = output / Path(ckpt_path).with_suffix(f".{fmt}").name
    if force:
        allow_replacing(output)
    else:
        refuse_read_only(output)
    if fmt == "onnx":
        return export_onnx(model, output, info, opset=opset, tolerance=tolerance)
    return Exported(export_safetensors(model, output, info))
