"""The LightningModule: any registered convvit model as an image classifier, with the papers' recipes.

Loss (cross-entropy, label smoothing, Mixup/CutMix soft targets -- timm's implementations), AdamW/SGD
with the no-decay parameter groups, per-step warmup then cosine or linear decay, an EMA of the weights
evaluated beside the raw weights, top-1/top-5 on validation and test.
"""
from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torchmetrics.classification import MulticlassAccuracy

from convvit.checkpoints import layout
from convvit.errors import CheckpointConflictError, ClassMismatchError, NonFiniteLossError
from convvit.models.factory import create_classifier
from convvit.training.distillation import (
    Distillation,
    check_same_teacher,
    distillation_loss,
    load_teacher,
    teacher_record,
)
from convvit.training.ema import build_ema, fit_checkpoint_ema
from convvit.training.optim import (
    LR_SCHEDULES,
    OPTIMIZERS,
    build_optimizer,
    excludes_no_weight_decay,
    warmup_decay,
)
from convvit.training.rng import RngStates
from convvit.training.settings import (
    Architecture,
    DataLinked,
    Ema,
    MixupSettings,
    OptimizerSettings,
    Runtime,
    Schedule,
    init_signature,
    settings_doc,
    split_settings,
)

__all__ = [
    "ImageClassifier", "NonFiniteLossError", "ClassMismatchError", "CheckpointConflictError", "latest_checkpoint",
]


def _describe_classes(num_classes: int, names: Sequence[str] | None) -> str:
    if not names:
        return f"{num_classes} classes"
    shown = ", ".join(map(str, names[:8])) + (", ..." if len(names) > 8 else "")
    return f"{num_classes} classes [{shown}]"


class ImageClassifier(L.LightningModule):
    """Image classification with a registered convvit model.

    Settings (``--model.KEY``, also keyword arguments here) are the fields of the groups in
    :mod:`convvit.training.settings` (architecture, data-linked, optimizer, schedule, Mixup, EMA, runtime), each
    declared there once with its resume policy, plus ``distillation``, DeiT's distillation from a frozen teacher
    into the model's distillation head (:class:`~convvit.training.distillation.Distillation`: type none|soft|hard,
    teacher, alpha, tau). Unknown settings raise TypeError.

    Args:
{settings}
        distillation: DeiT's distillation (``--model.distillation.*``).
    """

    def __init__(self, *args: Any, **settings: Any) -> None:
        # not super(): Lightning's save_hyperparameters reads the arguments of an __init__ that uses it from its
        # frame by the signature's names, which here are generated (init_signature), not local variables
        L.LightningModule.__init__(self)
        bound = inspect.signature(ImageClassifier.__init__).bind(self, *args, **settings)
        bound.apply_defaults()
        settings = dict(bound.arguments)
        del settings["self"]
        groups = split_settings(settings)
        arch, data, mix, ema, runtime = (groups[g] for g in (Architecture, DataLinked, MixupSettings, Ema, Runtime))
        optim, schedule = groups[OptimizerSettings], groups[Schedule]
        name, num_classes, in_chans, img_size, class_names = (
            arch.name, data.num_classes, data.in_chans, data.img_size, data.class_names)
        if optim.optimizer not in OPTIMIZERS:  # checked here so that a typo fails before any data is read
            raise ValueError(f"--model.optimizer must be one of {', '.join(OPTIMIZERS)}, got {optim.optimizer!r}")
        if schedule.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--model.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {schedule.lr_schedule!r}")
        if not (math.isfinite(optim.lr) and optim.lr > 0):  # torch would refuse a negative one only in training
            raise ValueError(f"--model.lr {optim.lr:g} is not a learning rate: it must be a positive number. "
                             "Fix: e.g. --model.lr 1e-3")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} entries but num_classes is {num_classes}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
        if isinstance(img_size, Sequence):
            img_size = tuple(int(s) for s in img_size)
        self.distillation = Distillation.coerce(settings["distillation"])
        # flat, as the options name them (and as checkpoints written before the groups hold them); plain types, so
        # that checkpoints load weights-only. config.yaml holds the run config; the data module logs its own.
        settings.update(class_names=class_names, img_size=img_size, distillation=self.distillation.as_dict())
        self.save_hyperparameters(settings, logger=False)

        self.model = create_classifier(
            name,
            num_classes,
            in_chans,
            img_size,
            checkpoint_path=arch.init_checkpoint,
            drop_path_rate=arch.drop_path_rate,
            **(arch.model_kwargs or {}),
        )
        if self.distillation.enabled:
            if not getattr(self.model, "distilled", False):
                raise ValueError(
                    f"distillation needs a model with a distillation token and head; {name} has none. Fix: a "
                    "*_distilled model (deit_tiny_distilled ...) or --model.model_kwargs '{distilled: true}'"
                )
            self.model.set_distilled_training(True)  # training steps get (class logits, distillation logits)
        # the frozen teacher stays out of the module tree: not in checkpoints, not moved to train mode
        self.__dict__["_teacher"] = None
        self.__dict__["_teacher_record"] = None
        if runtime.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ema_model = build_ema(self.model, ema.ema_decay, ema.ema_warmup) if ema.ema else None

        self.mixup = None
        if mix.mixup_alpha > 0 or mix.cutmix_alpha > 0:
            self.mixup = Mixup(
                mixup_alpha=mix.mixup_alpha,
                cutmix_alpha=mix.cutmix_alpha,
                prob=mix.mixup_prob,
                switch_prob=mix.mixup_switch_prob,
                label_smoothing=mix.label_smoothing,
                num_classes=num_classes,
            )
            self.train_loss: nn.Module = SoftTargetCrossEntropy()
        elif mix.label_smoothing > 0:
            self.train_loss = LabelSmoothingCrossEntropy(smoothing=mix.label_smoothing)
        else:
            self.train_loss = nn.CrossEntropyLoss()

        top5 = min(5, num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_acc{k}{suffix}": MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
                for stage in ("val", "test")
                for suffix in ("", "_ema")
                for k, top_k in ((1, 1), (5, top5))
            }
        )
        self._compiled: nn.Module | None = None

    __doc__ = __doc__.format(settings=settings_doc(indent=" " * 8))  # the fields' help, for --help

    # ------------------------------------------------------------------ forward
    @property
    def has_ema(self) -> bool:
        return self.ema_model is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of the raw (non-EMA) model. ``x``: (B, in_chans, H, W) normalised images."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # `is None`, not `or`: a compiled module's truthiness calls __len__, which torch.compile's wrapper refuses.
        model = self.model if self._compiled is None else self._compiled
        return model(x)

    def setup(self, stage: str) -> None:
        if self.hparams.compile and self._compiled is None:
            # kept out of the module tree so that state-dict keys stay "model.*"
            self.__dict__["_compiled"] = torch.compile(self.model)
        if stage == "fit" and self.distillation.enabled and self._teacher is None:
            hp = self.hparams
            self.__dict__["_teacher"] = load_teacher(self.distillation, hp.num_classes, hp.in_chans, hp.img_size,
                                                     hp.class_names)
            self.__dict__["_teacher_record"] = teacher_record(self.distillation)

    def on_fit_start(self) -> None:
        if self._teacher is not None:  # the student's device and parameter dtype; autocast covers the rest
            self._teacher.to(device=self.device, dtype=next(self.model.parameters()).dtype)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixup is not None:
            if x.shape[0] % 2:  # timm's Mixup pairs each sample with its mirror in the batch
                x, y = x[:-1], y[:-1]
            x, y = self.mixup(x, y)
        out = self(x)
        if isinstance(out, tuple):  # a distilled model in distilled training: (class, distillation) logits
            logits, dist_logits = out
            loss = self.train_loss(logits, y)
            if self._teacher is not None:
                with torch.no_grad():
                    teacher_logits = self._teacher(x)  # the same (mixed) batch, as DeiT
                d = self.distillation
                loss = distillation_loss(loss, dist_logits, teacher_logits, d.type, d.alpha, d.tau)
        else:
            loss = self.train_loss(out, y)
        self._check_finite(loss, batch_idx)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        bad = getattr(datamodule, "num_bad_images", 0)
        if bad:  # images skipped with --data.skip_bad_images true
            self.log("data/bad_images", float(bad), rank_zero_only=True)

    def _check_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        bad = not bool(torch.isfinite(loss.detach()))
        if self.trainer.world_size > 1:  # every rank must stop together, or the others hang in all-reduce
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        ckpt = latest_checkpoint(self.trainer)
        lower_lr = f"--model.lr {self.hparams.lr / 10:g}"
        if ckpt:
            # --ckpt_path resumes with the checkpoint's own lr, so a lower one means new training from its weights
            advice = (
                f"The last good checkpoint is {ckpt}. Start new training from its weights with a lower learning "
                f"rate: --model.init_checkpoint {ckpt} {lower_lr} (warmup: --model.warmup_epochs); or resume it "
                f"as it was with gradient clipping: --ckpt_path {ckpt} --trainer.gradient_clip_val 1.0"
            )
        else:
            advice = (
                f"No checkpoint had been saved yet. Lower the learning rate ({lower_lr}), add warmup "
                "(--model.warmup_epochs) or clip gradients (--trainer.gradient_clip_val 1.0)"
            )
        raise NonFiniteLossError(
            f"training loss is {loss.detach().float().item()} at step {self.global_step} (epoch {self.current_epoch}, "
            f"batch {batch_idx}); training stopped. {advice}."
        )

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema_model is not None:
            self.ema_model.update(self.model, step=self.global_step + 1)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), batch_size=x.shape[0], sync_dist=True)
        outputs = [("", logits)]
        if self.ema_model is not None:
            if self.hparams.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            outputs.append(("_ema", self.ema_model.module(x)))
        for suffix, out in outputs:
            for k in (1, 5):
                metric = self.metrics[f"{stage}_acc{k}{suffix}"]
                metric(out, y)
                self.log(f"{stage}/acc{k}{suffix}", metric, prog_bar=(k == 1), batch_size=x.shape[0])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch)

    # ------------------------------------------------------------------ optimization
    def effective_lr(self) -> float:
        """The peak learning rate after linear scaling with the global batch size (when configured)."""
        lr, base = self.hparams.lr, self.hparams.lr_base_batch_size
        if not base:
            return lr
        batch = getattr(self.trainer.datamodule, "batch_size", None) if self.trainer.datamodule else None
        if batch is None:
            raise ValueError("lr_base_batch_size is set but the data module has no batch_size to scale the lr with")
        global_batch = batch * self.trainer.world_size * self.trainer.accumulate_grad_batches
        return lr * global_batch / base

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        exclude = hp.exclude_no_weight_decay
        if exclude is None:
            exclude = excludes_no_weight_decay(self.model)
        optimizer = build_optimizer(
            self.model, hp.optimizer, self.effective_lr(), hp.weight_decay, hp.momentum, hp.nesterov, hp.betas,
            exclude_no_weight_decay=exclude,
        )
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise ValueError("set --trainer.max_epochs or --trainer.max_steps: the lr schedule needs a length")
        total_steps = max(int(total_steps), 1)
        if not math.isfinite(self.trainer.num_training_batches):  # max_epochs=-1: the loader is not set up yet
            self.trainer.fit_loop.setup_data()
        batches = self.trainer.num_training_batches
        steps_per_epoch = (max(math.ceil(batches / self.trainer.accumulate_grad_batches), 1)
                           if math.isfinite(batches) else 1)
        scheduler = warmup_decay(
            optimizer,
            total_steps=total_steps,
            warmup_steps=round(hp.warmup_epochs * steps_per_epoch),
            start_factor=hp.warmup_start_factor,
            min_factor=hp.min_lr_factor,
            shape=hp.lr_schedule,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        logger = self.trainer.logger if self._trainer is not None else None
        checkpoint[layout.METADATA_KEY] = layout.convvit_metadata(
            val_acc1=float(metrics["val/acc1"]) if "val/acc1" in metrics else None,
            val_acc1_ema=float(metrics["val/acc1_ema"]) if "val/acc1_ema" in metrics else None,
            run_name=logger.name if logger is not None else None,
        )
        if self._teacher_record is not None:
            checkpoint[layout.METADATA_KEY]["teacher"] = dict(self._teacher_record)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(layout.HPARAMS_KEY, {})
        hp = self.hparams
        saved_n, saved_names = saved.get("num_classes"), saved.get("class_names")
        if saved_n is not None and (
            saved_n != hp.num_classes or (saved_names and hp.class_names and list(saved_names) != list(hp.class_names))
        ):
            raise ClassMismatchError(
                f"the checkpoint was trained on {_describe_classes(saved_n, saved_names)} but the data has "
                f"{_describe_classes(hp.num_classes, hp.class_names)}. Use data with the checkpoint's classes, or "
                "fine-tune from its weights with --model.init_checkpoint CKPT (the head is re-initialised)."
            )
        fit_checkpoint_ema(checkpoint.get(layout.STATE_KEY, {}), keeps_ema=self.ema_model is not None)
        if self._teacher_record is not None:  # resuming a distilled fit: the teacher must be the same file
            check_same_teacher((checkpoint.get(layout.METADATA_KEY) or {}).get("teacher"), self._teacher_record)

    def configure_callbacks(self) -> list[L.Callback]:
        # every trainer this module runs in saves the RNG states and restores them on resume, CLI or not; one that
        # has them already (fit, then the test after it) keeps its own, or Lightning says a callback is overridden
        if self._trainer is not None and any(isinstance(cb, RngStates) for cb in self._trainer.callbacks):
            return []
        return [RngStates()]


def model_signature() -> inspect.Signature:
    """ImageClassifier's parameters, the ``--model.KEY`` options: one per settings field, then distillation."""
    return init_signature(distillation=inspect.Parameter(
        "distillation", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Distillation, default=Distillation()))


ImageClassifier.__init__.__signature__ = model_signature()


def latest_checkpoint(trainer: L.Trainer) -> str:
    """The most recently written checkpoint file of the trainer's ModelCheckpoint callbacks ("" if none)."""
    paths = {
        p
        for cb in trainer.checkpoint_callbacks
        for p in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", ""))
        if p and os.path.isfile(p)
    }
    return max(paths, key=os.path.getmtime, default="")
