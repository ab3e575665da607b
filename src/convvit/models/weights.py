"""Read, convert and write model weights.

One entry point loads every checkpoint a user is likely to hold, recognised by its keys:

* convvit's own ``.safetensors`` (see :func:`save_weights`);
* Lightning training checkpoints (weights under ``"state_dict"``, prefixed ``"model."``; EMA
  weights under ``"ema_model."`` / ``"model_ema."`` are used only with ``use_ema=True``);
* timm checkpoints (DeiT, ConViT): a plain state dict, or one under ``"model"``, ``"state_dict"``
  or ``"state_dict_ema"``;
* official CvT ``.pth`` files (microsoft/CvT) and Hugging Face ``CvtForImageClassification``
  weights (``pytorch_model.bin`` or ``model.safetensors``).

Files are read with safetensors or ``torch.load(weights_only=True)`` only, so a checkpoint is
never executed: a pickle that holds arbitrary Python objects is refused with an explanation.
When the model's ``num_classes`` differs from the checkpoint's, the classifier is left as the
model initialised it (and a message says so); when its input size differs, absolute position
embeddings are resampled (bicubic); when its input channels differ, the first convolution is
adapted (timm's ``adapt_input_conv``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from convvit.errors import ConvvitError, disk_full_error, is_disk_full
from convvit.fileio import new_file_mode

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "convert_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "read_checkpoint_file",
    "load_error",
    "is_safetensors_file",
    "read_checkpoint_metadata",
    "save_weights",
]

_logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


class CheckpointError(ConvvitError, ValueError):
    """A checkpoint file cannot be read, or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled Python objects other than tensors and plain containers."""


# ----------------------------------------------------------------------------- writing
def save_weights(model: nn.Module, path: PathLike, metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``model``'s weights (state dict) to a ``.safetensors`` file, atomically.

    ``metadata`` (string values; others are stored as JSON) goes into the file header, e.g.
    ``{"architecture": "vit_c_1gf", "num_classes": "10", "class_names": json.dumps(names)}``.
    ``architecture`` and ``num_classes`` are filled in from the model when missing.
    """
    from safetensors.torch import save_file

    path = Path(path)
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

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, Exception) and is_disk_full(err):
            raise disk_full_error(path, path.exists()) from err
        raise


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


def _damaged(path: Path, detail: str) -> CheckpointError:
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


def load_error(path: PathLike, err: Exception) -> CheckpointError:
    """The error to raise when ``torch.load(path, weights_only=True)`` (convvit's or Lightning's) failed with
    ``err``: empty, damaged, or holding code -- torch's own message for the last suggests ``weights_only=False``,
    that is, running the file's code, which convvit never advises."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        return _empty(path)
    msg = str(err)
    if "Weights only load failed" in msg:
        blocked = re.search(r"GLOBAL ([\w.]+)", msg)
        return _refuse_unsafe(path, [blocked.group(1) if blocked else "unsupported pickled content"])
    first = msg.split(". ")[0].splitlines()[0][:160] if msg else type(err).__name__
    return _damaged(path, f"{type(err).__name__}: {first}")


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
            raise _damaged(path, f"not a valid .safetensors file: {str(err)[:160]}") from None
        return tensors, meta
    return _torch_load(path), {}


# ----------------------------------------------------------------------------- finding the weights
_EMA_PREFIXES = ("ema_model.", "model_ema.")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _plain_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if isinstance(value, str):
            out[str(key)] = value
        else:
            try:
                out[str(key)] = json.dumps(value)
            except TypeError:
                out[str(key)] = str(value)
    return out


def _extract(obj: Any, use_ema: bool) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    """Find the model weights in a loaded checkpoint: ``(state_dict, container description, metadata)``."""
    meta: dict[str, str] = {}
    took_ema = False
    if _is_state_dict(obj):
        state, container = dict(obj), "plain state dict"
    elif isinstance(obj, Mapping):
        if isinstance(obj.get("hyper_parameters"), Mapping):
            meta.update(_plain_metadata(obj["hyper_parameters"]))
        if isinstance(obj.get("metadata"), Mapping):
            meta.update(_plain_metadata(obj["metadata"]))
        order = ("state_dict_ema", "model_ema", "state_dict", "model") if use_ema else ("state_dict", "model", "module")
        for key in order:
            if _is_state_dict(obj.get(key)):
                state, container = dict(obj[key]), f'weights under "{key}"'
                took_ema = key in ("state_dict_ema", "model_ema")
                break
        else:
            raise CheckpointError(
                "found no weights in the checkpoint: expected a state dict, or one under "
                f'"state_dict" / "model" / "state_dict_ema"; its top-level keys are {sorted(map(str, obj))[:10]}'
            )
        if "pytorch-lightning_version" in obj or "optimizer_states" in obj:
            container = "Lightning checkpoint"
    else:
        raise CheckpointError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")

    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = _strip(state, prefix)
    # A LightningModule's state dict: the network under "model.", its EMA copy under "ema_model.".
    ema_prefix = next((p for p in _EMA_PREFIXES if any(k.startswith(p) for k in state)), None)
    if use_ema and ema_prefix is not None:
        state, container = _strip(state, ema_prefix), container + f' (EMA weights "{ema_prefix}")'
        for prefix in _WRAPPER_PREFIXES:  # timm's ModelEmaV2 wraps the copy in ".module"
            if all(k.startswith(prefix) for k in state):
                state = _strip(state, prefix)
    elif any(k.startswith("model.") for k in state) and not any(k.startswith("model.model.") for k in state):
        if not _looks_like_model(state):
            dropped = sorted(k for k in state if not k.startswith("model."))
            if dropped:
                _logger.info("ignoring %d non-model entries of the checkpoint (e.g. %s)", len(dropped), dropped[0])
            state = _strip(state, "model.")
    elif use_ema and not took_ema:
        raise CheckpointError("use_ema=True, but the checkpoint has no EMA weights")
    return state, container, meta


def _looks_like_model(state: Mapping[str, torch.Tensor]) -> bool:
    """True if the keys are a model's own (so a "model." prefix is part of a key, not a wrapper)."""
    return any(k.startswith(("blocks.", "stages.", "stage0.", "cvt.", "patch_embed.")) for k in state)


# ----------------------------------------------------------------------------- key formats
# Hugging Face CvtForImageClassification -> official microsoft/CvT names (applied in order).
_HF_TO_OFFICIAL = [
    (r"^cvt\.", ""),
    (r"^encoder\.stages\.(\d+)\.", r"stage\1."),
    (r"\.embedding\.convolution_embeddings\.projection\.", ".patch_embed.proj."),
    (r"\.embedding\.convolution_embeddings\.normalization\.", ".patch_embed.norm."),
    (r"\.layers\.(\d+)\.", r".blocks.\1."),
    (r"\.attention\.attention\.convolution_projection_(query|key|value)\.convolution_projection\.convolution\.",
     r".attn.conv_proj_\1.conv."),
    (r"\.attention\.attention\.convolution_projection_(query|key|value)\.convolution_projection\.normalization\.",
     r".attn.conv_proj_\1.bn."),
    (r"\.attention\.attention\.projection_(query|key|value)\.", r".attn.proj_\1."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"(conv_proj|proj)_query\b", r"\1_q"),
    (r"(conv_proj|proj)_key\b", r"\1_k"),
    (r"(conv_proj|proj)_value\b", r"\1_v"),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]
# Official CvT -> convvit CvT: the stages are a ModuleList.
_OFFICIAL_TO_CONVVIT = [(r"^stage(\d+)\.", r"stages.\1.")]


def _rename(state: Mapping[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _detect_format(keys: set[str]) -> str:
    """Name the key layout: 'hf_cvt', 'official_cvt', 'cvt', 'convit', 'vit_c', 'vit' or 'unknown'."""
    if any(k.startswith(("cvt.encoder.", "encoder.stages.")) for k in keys):
        return "hf_cvt"
    if any(k.startswith("stage0.patch_embed.") for k in keys):
        return "official_cvt"
    if any(k.startswith("stages.0.patch_embed.") for k in keys):
        return "cvt"
    if any(k.endswith("attn.gating_param") for k in keys):
        return "convit"
    if any(k.startswith("blocks.0.attn.qkv.") for k in keys):
        return "vit_c" if any(k.startswith("patch_embed.stem.") for k in keys) else "vit"
    return "unknown"


_FORMAT_NAMES = {
    "hf_cvt": "a Hugging Face CvtForImageClassification (CvT) checkpoint",
    "official_cvt": "an official microsoft/CvT checkpoint",
    "cvt": "a convvit CvT checkpoint",
    "convit": "a ConViT checkpoint (timm / facebookresearch/convit layout)",
    "vit_c": "a ViT_C checkpoint (convolutional stem)",
    "vit": "a ViT_P / DeiT checkpoint (timm layout, patchify stem)",
    "unknown": "an unrecognised architecture",
}


def _to_convvit(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    fmt = _detect_format(set(state))
    if fmt == "hf_cvt":
        state = _rename(_rename(state, _HF_TO_OFFICIAL), _OFFICIAL_TO_CONVVIT)
    elif fmt == "official_cvt":
        state = _rename(state, _OFFICIAL_TO_CONVVIT)
    return state, fmt


def read_checkpoint(path: PathLike, use_ema: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file into a convvit-named state dict, without a model.

    Returns ``(state_dict, info)`` with ``info = {"format", "container", "metadata"}``.
    """
    obj, meta = read_checkpoint_file(path)
    state, container, extra_meta = _extract(obj, use_ema)
    state, fmt = _to_convvit(state)
    metadata = {**extra_meta, **meta, **_hf_config_metadata(Path(path), fmt)}
    return state, {"format": fmt, "container": container, "metadata": metadata}


def _hf_config_metadata(path: Path, fmt: str) -> dict[str, str]:
    """Class names from the ``config.json`` that sits beside a Hugging Face weights file."""
    config = (path if path.is_dir() else path.parent) / "config.json"
    if fmt != "hf_cvt" or not config.is_file():
        return {}
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError):
        return {}
    meta = {}
    id2label = cfg.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            names = [id2label[k] for k in sorted(id2label, key=int)]
            meta["class_names"] = json.dumps(names)
            meta["num_classes"] = str(len(names))
        except (ValueError, TypeError):
            pass
    return meta


def read_checkpoint_metadata(path: PathLike) -> dict[str, str]:
    """The metadata stored with a checkpoint (string values; ``class_names`` is a JSON list).

    For convvit ``.safetensors`` files this is the header written by :func:`save_weights`; for
    Lightning checkpoints, the hyper-parameters; for Hugging Face weights, the labels of the
    ``config.json`` beside the file. Keys not stored are absent.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            head = f.read(9)
        if _is_safetensors(head, path.stat().st_size):
            from safetensors import safe_open

            try:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    return dict(f.metadata() or {})
            except Exception as err:  # noqa: BLE001
                raise _damaged(path, f"not a valid .safetensors file: {str(err)[:160]}") from None
    _, info = read_checkpoint(path)
    return info["metadata"]


# ----------------------------------------------------------------------------- fitting to a model
def _classifier_name(model: nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "head")


def _first_conv_name(model: nn.Module) -> str | None:
    return (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")


def _square_grid(num_tokens: int) -> int | None:
    side = math.isqrt(num_tokens)
    return side if side * side == num_tokens else None


def _model_grid(model: nn.Module) -> tuple[int, int] | None:
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    return tuple(grid) if grid is not None else None


def _fit_to_model(
    state: dict[str, torch.Tensor], model: nn.Module, *, log_prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Adapt head, position embedding and first convolution of ``state`` to ``model``."""
    from timm.layers import resample_abs_pos_embed
    from timm.models import adapt_input_conv

    target = model.state_dict()
    notes: dict[str, Any] = {"head_reset": False, "resampled": [], "adapted": []}

    clf = _classifier_name(model)
    head_keys = [k for k in (f"{clf}.weight", f"{clf}.bias") if k in state]
    model_classes = getattr(model, "num_classes", None)
    if head_keys and any(k not in target or target[k].shape != state[k].shape for k in head_keys):
        ckpt_classes = state[head_keys[0]].shape[0]
        for k in head_keys:
            del state[k]
        notes["head_reset"] = True
        _logger.warning(
            "%s: the checkpoint's classifier has %d classes, the model %s; the classifier is not loaded and "
            "keeps the model's fresh initialisation (fine-tune it).", log_prefix, ckpt_classes, model_classes,
        )
    elif not head_keys and any(k.startswith(clf + ".") for k in target):
        notes["head_reset"] = True
        _logger.warning(
            "%s: the checkpoint has no classifier; the model's %s-class classifier keeps its fresh initialisation.",
            log_prefix, model_classes,
        )

    for key, value in list(state.items()):
        if key not in target or target[key].shape == value.shape:
            continue
        want = target[key]
        if key.endswith("pos_embed") and value.ndim == 3 and want.ndim == 3 and value.shape[2] == want.shape[2]:
            grid = _model_grid(model)
            if grid is None:
                continue
            prefix = want.shape[1] - grid[0] * grid[1]
            old = _square_grid(value.shape[1] - prefix) if prefix >= 0 else None
            if old is None:
                continue  # reported as a shape mismatch
            state[key] = resample_abs_pos_embed(value, list(grid), [old, old], num_prefix_tokens=prefix)
            notes["resampled"].append(key)
            _logger.info("%s: resampled %s from a %dx%d to a %dx%d grid", log_prefix, key, old, old, *grid)
        elif (
            _first_conv_name(model) and key == f"{_first_conv_name(model)}.weight" and value.ndim == 4
            and value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]
        ):
            state[key] = adapt_input_conv(want.shape[1], value)
            notes["adapted"].append(key)
            _logger.info("%s: adapted %s from %d to %d input channels", log_prefix, key, value.shape[1], want.shape[1])
    return state, notes


def _closest_models(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered convvit models whose weights (except classifier and position embedding) match ``state``."""
    from convvit.models.registry import create_model, list_models

    def skip(k: str) -> bool:
        return k.startswith(("head.", "pos_embed")) or k.endswith("pos_embed")

    wanted = {k: tuple(v.shape) for k, v in state.items() if not skip(k)}
    families = {"cvt": ("cvt_*",), "convit": ("convit_*",), "vit_c": ("vit_c_*",), "vit": ("vit_p_*", "deit_*")}
    fmt = _detect_format(set(state))
    names = [n for pattern in families.get(fmt, ("*",)) for n in list_models(pattern)]
    matches = []
    for name in names:
        try:
            with torch.device("meta"):
                candidate = create_model(name)
        except Exception:  # noqa: BLE001  (a builder that cannot run on the meta device)
            continue
        have = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if not skip(k)}
        if have == wanted:
            matches.append(name)
    return matches


def _mismatch_error(
    path: PathLike, model: nn.Module, fmt: str, meta: Mapping[str, str], missing: list[str],
    unexpected: list[str], wrong_shape: list[str], state: Mapping[str, torch.Tensor],
) -> CheckpointError:
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", type(model).__name__)
    parts = []
    if missing:
        parts.append(f"missing in the file: {', '.join(missing[:5])}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
    if unexpected:
        parts.append(
            f"not in the model: {', '.join(unexpected[:5])}" + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else "")
        )
    if wrong_shape:
        target = model.state_dict()
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in wrong_shape[:5]]
        parts.append("different shapes (file vs model): " + ", ".join(shapes))
    looks = _FORMAT_NAMES[fmt]
    if meta.get("architecture"):
        looks += f" that says it holds {meta['architecture']!r}"
    try:
        close = _closest_models(state)
    except Exception:  # noqa: BLE001  (the hint must never hide the real error)
        close = []
    hint = f"; it matches convvit's {', '.join(close)}" if close else ""
    fix = f" Build that model instead: convvit.create_model({close[0]!r}, checkpoint_path=...)." if close else ""
    return CheckpointError(
        f"checkpoint {path} does not fit {arch}: " + "; ".join(parts) + f". The file looks like {looks}{hint}.{fix}"
    )


def load_checkpoint(
    model: nn.Module, path: PathLike, strict: bool = True, use_ema: bool = False
) -> dict[str, Any]:
    """Load a convvit, Lightning, timm, official CvT or Hugging Face CvT checkpoint into ``model``.

    Args:
        model: a convvit model.
        path: the file (or a Hugging Face model folder).
        strict: raise :class:`CheckpointError` when keys are missing or unexpected (the classifier
            of a different ``num_classes`` is never an error: it is left as initialised).
        use_ema: load the EMA weights of a Lightning / timm training checkpoint.

    Returns:
        ``{"format", "container", "metadata", "missing_keys", "unexpected_keys", "head_reset",
        "resampled", "adapted"}``.
    """
    state, info = read_checkpoint(path, use_ema=use_ema)
    return _load_state(model, state, info, path, strict)


def _load_state(
    model: nn.Module, state: dict[str, torch.Tensor], info: dict[str, Any], path: PathLike, strict: bool
) -> dict[str, Any]:
    fmt, meta = info["format"], info["metadata"]
    target = model.state_dict()
    clf = _classifier_name(model) + "."
    missing = [k for k in target if k not in state and not k.startswith(clf)]
    unexpected = [k for k in state if k not in target and not k.startswith(clf)]
    if strict and (missing or unexpected):
        wrong_shape = [k for k in state if k in target and state[k].shape != target[k].shape and not k.startswith(clf)]
        raise _mismatch_error(path, model, fmt, meta, missing, unexpected, wrong_shape, state)
    state, notes = _fit_to_model(state, model, log_prefix=str(path))
    wrong_shape = [k for k in state if k in target and state[k].shape != target[k].shape]
    if wrong_shape:
        raise _mismatch_error(path, model, fmt, meta, missing, unexpected, wrong_shape, state)
    if (fmt == "hf_cvt" or meta.get("act_layer") == "gelu") and _uses_quick_gelu(model):
        _logger.warning(
            "%s: Hugging Face CvT uses GELU, this model QuickGELU (the official CvT's); build it with "
            "act_layer='gelu' to reproduce the Hugging Face outputs exactly.", path,
        )
    model.load_state_dict({k: v for k, v in state.items() if k in target}, strict=False)
    return {**info, "missing_keys": missing, "unexpected_keys": unexpected, **notes}


def _uses_quick_gelu(model: nn.Module) -> bool:
    from convvit.models.layers import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


# ----------------------------------------------------------------------------- conversion
def convert_checkpoint(src: PathLike, dst: PathLike, model_name: str, **model_kwargs: Any) -> Path:
    """Convert any checkpoint :func:`load_checkpoint` reads into convvit-native ``.safetensors``.

    ``num_classes`` and ``in_chans`` default to the checkpoint's (so a fine-tuned head is kept)
    and ``img_size`` to the one its position embedding was trained at; pass them to override.
    Metadata (class names ...) found in the source is carried over.
    """
    from convvit.models.registry import create_model, default_cfg

    state, info = read_checkpoint(src)
    cfg = default_cfg(model_name)
    clf_weight = state.get(f"{cfg.get('classifier', 'head')}.weight")
    if "num_classes" not in model_kwargs and clf_weight is not None:
        model_kwargs["num_classes"] = clf_weight.shape[0]
    first = state.get(f"{cfg.get('first_conv')}.weight")
    if "in_chans" not in model_kwargs and first is not None and first.ndim == 4:
        model_kwargs["in_chans"] = first.shape[1]
    model = create_model(model_name, **model_kwargs)
    if "img_size" not in model_kwargs and "pos_embed" in state:
        grid = _model_grid(model)
        want = model.state_dict().get("pos_embed")
        if grid is not None and want is not None and want.shape != state["pos_embed"].shape:
            prefix = want.shape[1] - grid[0] * grid[1]
            side = _square_grid(state["pos_embed"].shape[1] - prefix)
            if side is not None:
                stride = model.img_size[0] // grid[0] if isinstance(model.img_size, tuple) else model.img_size // grid[0]
                model = create_model(model_name, **{**model_kwargs, "img_size": side * stride})
    _load_state(model, dict(state), info, src, strict=True)
    metadata = {k: v for k, v in info["metadata"].items() if k in ("class_names",)}
    metadata["source_format"] = info["format"]
    if info["format"] == "hf_cvt":  # Hugging Face's CvT was trained with GELU: say so to whoever loads it
        metadata["act_layer"] = "gelu"
    metadata["source_file"] = Path(src).name
    save_weights(model, dst, metadata=metadata)
    return Path(dst)
