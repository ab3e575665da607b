"""The model settings of ``convvit fit | validate | test``, in typed groups, each declared once with its policy.

Every ``--model.KEY`` option is a field of one group below, made with :func:`convvit.settings.setting`, whose
metadata says, beside it, how a checkpoint treats it (the policies are described in :mod:`convvit.settings`;
``policy=FROM_DATA``: linked from the data module by the CLI, not set on the model).

The options stay flat (``--model.lr``, as the shipped configs write them) and so do checkpoints' hyper-parameters:
:func:`init_signature` is the signature LightningCLI reads, one parameter per field. This module imports only the
standard library and :mod:`convvit.data.settings` (the data's groups, also standard library only), so that the
fast option check (:mod:`convvit.training.option_names`) can read the names.
(No ``from __future__ import annotations``: jsonargparse reads the fields' types from the signature.)
"""
import inspect
from dataclasses import dataclass
from typing import Any

from convvit import settings as _settings
from convvit.data import settings as data_settings
from convvit.settings import FROM_DATA, RESUME_MAY_CHANGE, TRAINING_ONLY, setting

__all__ = [
    "FROM_DATA",
    "MODEL_GROUPS",
    "RESUME_MAY_CHANGE",
    "TRAINING_ONLY",
    "Architecture",
    "DataLinked",
    "Ema",
    "MixupSettings",
    "OptimizerSettings",
    "Runtime",
    "Schedule",
    "data_fixed_by_checkpoint",
    "from_data",
    "init_signature",
    "model_setting_names",
    "setting",
    "settings_doc",
    "split_settings",
    "with_policy",
]


@dataclass
class Architecture:
    name: str = setting("vit_c_nano_32px", doc="registered model name (`convvit models` lists them).")
    drop_path_rate: float = setting(0.0, doc="stochastic depth.", policy=TRAINING_ONLY)
    model_kwargs: dict[str, Any] | None = setting(  # noqa: RUF009  (setting() is a field(); default None)
        None, doc="further constructor arguments of the model (e.g. ``global_pool``).")
    init_checkpoint: str | None = setting(
        None, policy=TRAINING_ONLY,
        doc="weights to start from (any file ``convvit.create_model(checkpoint_path=...)`` reads; the head is "
            "re-initialised when the class count differs). Not a resume: use ``--ckpt_path``.")


@dataclass
class DataLinked:
    """Set from the data module (linked by the CLI); stored in every checkpoint so that predict/export need
    nothing else. The class count and names are checked when a checkpoint is loaded; which of the data settings
    behind the others must match the checkpoint is declared on the data's fields (:mod:`convvit.data.settings`)."""

    num_classes: int = setting(10, doc="class count (from the data).", policy=FROM_DATA)
    in_chans: int = setting(3, doc="input channels (from the data).", policy=FROM_DATA)
    img_size: int | tuple[int, int] = setting(32, doc="input size (from the data).", policy=FROM_DATA)
    class_names: list[str] | None = setting(None, doc="class names (from the data).",  # noqa: RUF009  (as above)
                                            policy=FROM_DATA)
    mean: tuple[float, ...] | None = setting(None, doc="normalisation mean (from the data).", policy=FROM_DATA)
    std: tuple[float, ...] | None = setting(None, doc="normalisation std (from the data).", policy=FROM_DATA)
    crop_pct: float | None = setting(None, doc="evaluation crop fraction (from the data).", policy=FROM_DATA)
    interpolation: str = setting("bicubic", doc="resize interpolation (from the data).", policy=FROM_DATA)


@dataclass
class OptimizerSettings:
    optimizer: str = setting("adamw", doc="``adamw`` or ``sgd``.", policy=TRAINING_ONLY)
    lr: float = setting(1e-3, policy=TRAINING_ONLY,
                        doc="peak learning rate; multiplied by ``global batch / lr_base_batch_size`` when that is set "
                            "(the papers' linear scaling rule, e.g. 1e-3 per 2048 images for ViT_P/ViT_C).")
    lr_base_batch_size: int | None = setting(None, doc="the batch size ``lr`` is given for (see lr).",
                                             policy=TRAINING_ONLY)
    weight_decay: float = setting(0.05, doc="weight decay.", policy=TRAINING_ONLY)
    momentum: float = setting(0.9, doc="SGD momentum.", policy=TRAINING_ONLY)
    nesterov: bool = setting(True, doc="SGD Nesterov momentum.", policy=TRAINING_ONLY)
    betas: tuple[float, float] = setting((0.9, 0.999), doc="AdamW betas.", policy=TRAINING_ONLY)
    exclude_no_weight_decay: bool | None = setting(
        None, policy=TRAINING_ONLY,
        doc="keep ``model.no_weight_decay()`` (position embedding, class token) out of weight decay. Default: per "
            "family -- decayed for ViT_P/ViT_C as in pycls, excluded otherwise as in timm/DeiT/ConViT/CvT. Norm "
            "gains and biases are never decayed.")


@dataclass
class Schedule:
    warmup_epochs: float = setting(0.0, doc="linear warmup length in epochs (may be fractional).",
                                   policy=TRAINING_ONLY)
    warmup_start_factor: float = setting(0.1, doc="warmup starts at ``warmup_start_factor * lr``.",
                                         policy=TRAINING_ONLY)
    min_lr_factor: float = setting(0.0, doc="after warmup the lr decays to ``min_lr_factor * lr``.",
                                   policy=TRAINING_ONLY)
    lr_schedule: str = setting("cosine", doc="the decay: a half cosine (``cosine``) or a straight line "
                                             "(``linear``), stepped every iteration.", policy=TRAINING_ONLY)


@dataclass
class MixupSettings:
    mixup_alpha: float = setting(0.0, doc="timm Mixup alpha (Mixup/CutMix are off when both alphas are 0).",
                                 policy=TRAINING_ONLY)
    cutmix_alpha: float = setting(0.0, doc="timm CutMix alpha (one of the two per batch when both are > 0).",
                                  policy=TRAINING_ONLY)
    mixup_prob: float = setting(1.0, doc="probability of mixing a batch.", policy=TRAINING_ONLY)
    mixup_switch_prob: float = setting(0.5, doc="probability of CutMix when both are on.", policy=TRAINING_ONLY)
    label_smoothing: float = setting(0.0, doc="label smoothing (folded into the Mixup targets when Mixup is on).",
                                     policy=TRAINING_ONLY)


@dataclass
class Ema:
    ema: bool = setting(False, policy=RESUME_MAY_CHANGE,
                        doc="keep an exponential moving average of the weights (timm ModelEmaV3), evaluated beside "
                            "the raw weights; a resumed run without one starts it from the loaded weights.")
    ema_decay: float = setting(0.9998, doc="EMA decay.", policy=RESUME_MAY_CHANGE)
    ema_warmup: bool = setting(True, doc="warm the EMA decay up over the first steps.", policy=RESUME_MAY_CHANGE)


@dataclass
class Runtime:
    channels_last: bool = setting(False, doc="run the model in channels-last memory format.",
                                  policy=RESUME_MAY_CHANGE)
    compile: bool = setting(False, doc="``torch.compile`` the model's forward for training and evaluation.",
                            policy=RESUME_MAY_CHANGE)


# In the order of ImageClassifier's parameters (and --help); the distillation group follows them, see
# ImageClassifier (it is a nested group: --model.distillation.*).
MODEL_GROUPS: tuple[type, ...] = (Architecture, DataLinked, OptimizerSettings, Schedule, MixupSettings, Ema, Runtime)


def model_setting_names() -> list[str]:
    """Every flat model setting, as ``--model.KEY`` names it."""
    return _settings.setting_names(MODEL_GROUPS)


def with_policy(policy: str) -> tuple[str, ...]:
    """The model settings declared with ``policy``."""
    return _settings.with_policy(MODEL_GROUPS, policy)


def from_data() -> tuple[str, ...]:
    """The model settings the CLI links from the data module's attributes of the same names."""
    return with_policy(FROM_DATA)


def data_fixed_by_checkpoint() -> tuple[str, ...]:
    """The data settings behind linked model settings that must match the checkpoint's."""
    linked = from_data()
    return tuple(name for name in _settings.fixed_by_checkpoint(data_settings.DATA_GROUPS) if name in linked)


def split_settings(settings: dict[str, Any]) -> dict[type, Any]:
    """Flat settings (every one given: :func:`init_signature` binds the defaults) as one instance per group."""
    return _settings.split_settings(MODEL_GROUPS, settings)


def init_signature(**after: inspect.Parameter) -> inspect.Signature:
    """``__init__(self, ...)`` with one parameter per field (``name`` first), then ``after`` (nested groups such
    as ``distillation``): what LightningCLI reads to make the ``--model.KEY`` options. Only ``name`` may be
    passed by position."""
    return _settings.init_signature(MODEL_GROUPS, 1, **after)


def settings_doc(indent: str = "    ") -> str:
    """The ``Args:`` lines of every field, for the docstring jsonargparse turns into ``--help``."""
    return _settings.settings_doc(MODEL_GROUPS, indent)
