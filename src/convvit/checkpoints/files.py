"""Checkpoint files: safe reading (nothing in a file is ever executed) and atomic writing.

Files are read with safetensors or ``torch.load(weights_only=True)`` only: a pickle that holds arbitrary Python
objects is refused with an explanation. Every file convvit writes (checkpoints, exports, weights) goes through
:func:`atomic_write`, so a process killed mid-write leaves the previous file intact.

This module knows nothing about models or the registry.
"""
from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from convvit.errors import CheckpointError, UnsafeCheckpointError
from convvit.fileio import atomic_write, remove_abandoned_temporaries

__all__ = [
    "atomic_write", "remove_abandoned_temporaries", "save_weights", "read_checkpoint_file", "load_error",
    "is_safetensors_file", "read_safetensors_metadata", "damaged_error",
]

_logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------- writing
def save_weights(model: nn.Module, path: PathLike, metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``model``'s weights (state dict) to a ``.safetensors`` file, atomically.

    ``metadata`` (string values; others are stored as JSON) goes into the file header, e.g.
    ``{"architecture": "vit_c_1gf", "num_classes": "10", "class_names": json.dumps(names)}``.
    ``architecture`` and ``num_classes`` are filled in from the model when missing.
    """
    from safetensors.torch import save

    meta: dict[str, str] = {"format": "convvit"}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("architecture"):
        meta["architecture"] = str(cfg["architecture"])
    if getattr(model, "num_classes", None) is not None:
        meta["num_classes"] = str(model.num_classes)
    for key, value in (metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)

    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and ident in seen:  # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        seen.add(ident)
        tensors[name] = tensor
    with atomic_write(path) as f:
        f.write(save(tensors, metadata=meta))


# ----------------------------------------------------------------------------- reading files
# Classes that only carry data and are common in training checkpoints (argparse/jsonargparse
# namespaces, Lightning's hyper-parameter dict, numpy scalars). Unpickling them runs no code from
# the file, so torch's weights-only loader may construct them.
_HARMLESS_GLOBALS = {
    "argparse.Namespace",
    "jsonargparse._namespace.Namespace",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
}


def _import_global(name: str) -> Any | None:
    module, _, attr = name.rpartition(".")
    try:
        obj = __import__(module, fromlist=[attr])
        return getattr(obj, attr)
    except (ImportError, AttributeError):
        return None


def _numpy_dtype_globals(names: list[str]) -> list[Any]:
    """numpy dtype classes (``numpy.dtypes.Float64DType`` ...) are harmless too."""
    found = []
    for name in names:
        if name.startswith(("numpy.dtypes.", "numpy.core.", "numpy._core.")) and name.endswith("DType"):
            obj = _import_global(name)
            if obj is not None:
                found.append(obj)
    return found


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < header_len <= size


def _refuse_unsafe(path: Path, names: list[str]) -> UnsafeCheckpointError:
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    return UnsafeCheckpointError(
        f"{path} holds code (pickled Python objects that are not tensors or plain data: {shown}) and was refused: "
        "convvit never runs code from a checkpoint. Fix: if you trust where the file comes from, save just its "
        "weights in Python (torch.save(state_dict, 'weights.pth')) or as .safetensors, and use that file instead."
    )


def _empty(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} is empty (0 bytes): a copy or download that did not finish, or a full disk, leaves such a file. "
        "Fix: copy or download it again"
    )


def damaged_error(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is truncated, damaged or not a checkpoint ({detail}). A copy or download that did not finish, "
        "or a disk that filled up while it was written, leaves such a file. Fix: copy or download it again, "
        "or use another checkpoint (e.g. the other .ckpt files of the run)."
    )


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, allowing only known data-only classes; clear errors otherwise."""
    extra: list[Any] = []
    if zipfile.is_zipfile(path):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as err:  # noqa: BLE001  (a damaged archive: reported by torch.load below)
            names = []
            _logger.debug("could not list globals of %s: %s", path, err)
        unsafe = [n for n in names if n not in _HARMLESS_GLOBALS and not n.endswith("DType")]
        if unsafe:
            raise _refuse_unsafe(path, unsafe)
        extra = [g for g in (_import_global(n) for n in names if n in _HARMLESS_GLOBALS) if g is not None]
        extra += _numpy_dtype_globals(names)
    for _ in range(4):  # legacy (non-zip) files: learn the needed globals from the refusals
        try:
            with torch.serialization.safe_globals(extra):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            msg = str(err)
            match = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL|Unsupported class) ([\w.]+)", msg)
            if match:
                name = match.group(1)
                obj = _import_global(name) if name in _HARMLESS_GLOBALS else None
                if obj is None or obj in extra:
                    raise _refuse_unsafe(path, [name]) from None
                extra.append(obj)
                continue
            raise load_error(path, err) from None
    raise _refuse_unsafe(path, ["(too many non-tensor classes)"])


def _not_a_checkpoint(path: Path) -> CheckpointError | None:
    """The error for a file that is no PyTorch file at all (neither a zip archive nor a pickle, whose first byte
    is PROTO, 0x80, in every protocol torch.save uses), naming what it is; None for a file that may be one,
    damaged or not.

    torch's weights-only loader calls any such bytes "unsupported pickled content", which reads as a file
    holding code."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # a zip archive (whole or cut short) or a pickle
        return None
    if path.suffix == ".safetensors" or _is_safetensors(head, path.stat().st_size):  # damaged: said as such
        return None
    fix = ("Fix: pass a PyTorch checkpoint or .safetensors file (predict, explain and export take the .ckpt "
           "files of `convvit fit`)")
    # An ONNX ModelProto starts with field 1 (ir_version, a varint) and field 2 (producer_name, a string).
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and head[2:3] == b"\x12"):
        return CheckpointError(
            f"{path} is an ONNX model, not a checkpoint: convvit reads PyTorch checkpoints and .safetensors. "
            f"{fix}, e.g. the checkpoint it was exported from; an .onnx file runs with onnxruntime "
            f"(onnxruntime.InferenceSession('{path}'))"
        )
    return CheckpointError(f"{path} is not a checkpoint: neither a PyTorch file (zip or pickle) nor .safetensors "
                           f"(it starts with {head[:8]!r}). {fix}")


def load_error(path: PathLike, err: Exception) -> CheckpointError:
    """The error to raise when ``torch.load(path, weights_only=True)`` (convvit's or Lightning's) failed with
    ``err``: empty, damaged, or holding code -- torch's own message for the last suggests ``weights_only=False``,
    that is, running the file's code, which convvit never advises."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        return _empty(path)
    if path.is_file() and (other := _not_a_checkpoint(path)) is not None:
        return other
    msg = str(err)
    if "Weights only load failed" in msg:
        blocked = re.search(r"GLOBAL ([\w.]+)", msg)
        return _refuse_unsafe(path, [blocked.group(1) if blocked else "unsupported pickled content"])
    first = msg.split(". ")[0].splitlines()[0][:160] if msg else type(err).__name__
    return damaged_error(path, f"{type(err).__name__}: {first}")


def is_safetensors_file(path: PathLike) -> bool:
    """True when ``path`` starts like a .safetensors file (a little-endian header length, then JSON)."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return _is_safetensors(f.read(9), path.stat().st_size)


def read_checkpoint_file(path: PathLike) -> tuple[Any, dict[str, str]]:
    """Load a checkpoint file (PyTorch or .safetensors) without executing it: ``(object, safetensors metadata)``.

    An empty, truncated or damaged file raises :class:`CheckpointError`, one that holds code
    :class:`UnsafeCheckpointError`, both with a message that names the file and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist. Fix: check the path")
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):  # a Hugging Face model folder
            if (path / name).is_file():
                return read_checkpoint_file(path / name)
        raise CheckpointError(f"{path} is a folder without model.safetensors or pytorch_model.bin. Fix: pass a file")
    size = path.stat().st_size
    if size == 0:
        raise _empty(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if _is_safetensors(head, size) or path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            tensors = {}
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as err:  # noqa: BLE001  (SafetensorError has no stable import path)
            raise damaged_error(path, f"not a valid .safetensors file: {str(err)[:160]}") from None
        return tensors, meta
    return _torch_load(path), {}



def read_safetensors_metadata(path: PathLike) -> dict[str, str] | None:
    """The header metadata of a ``.safetensors`` file, or None when ``path`` is not one."""
    path = Path(path)
    if not is_safetensors_file(path):
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # noqa: BLE001
        raise damaged_error(path, f"not a valid .safetensors file: {str(err)[:160]}") from None
