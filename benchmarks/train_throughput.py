"""Training images/s: `convvit fit` against a plain PyTorch loop, and the data loader alone.

Both train the same model with the same batch, optimizer, loss and augmentation. The plain loop is what a
user would write without convvit: timm's data pipeline (``timm.data.create_loader``: per-image PIL transforms
in loader workers) feeding a hand-written AdamW step. `convvit fit` runs in-process with its own data module
(batched augmentation for in-memory datasets), Lightning, logging, NaN checks and schedulers. Runs are
interleaved (plain, convvit, plain, ...) so that a shared, noisy machine affects both alike.

``--augment none`` (default) is the main job's recipe (no flip, no crop); ``--augment timm`` is timm's
training default (RandomResizedCrop + horizontal flip) on both sides, where convvit also runs timm's
per-image transforms, so the ratio isolates what Lightning and convvit's module add.

    python benchmarks/train_throughput.py                          # Fashion-MNIST, vit_c_nano_32px, batch 128
    python benchmarks/train_throughput.py --augment timm --rounds 5

Goal (issue 4): convvit within 5% of the plain loop; the loader alone much faster than training.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_loader

import convvit
from convvit.cli import main as convvit_main
from convvit.data import ImageDataModule
from convvit.training.optim import build_optimizer


class StepTimer(L.Callback):
    """Times training steps ``warmup`` .. ``max_steps`` (written to ``path`` as JSON: steps and seconds)."""

    def __init__(self, path: str, warmup: int) -> None:
        self.path, self.warmup = path, warmup
        self.start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.start is not None and trainer.global_step == trainer.max_steps:  # stop before end-of-fit saves
            seconds = time.perf_counter() - self.start
            with open(self.path, "w") as f:
                json.dump({"steps": trainer.global_step - self.warmup, "seconds": seconds}, f)


# convvit data options of each --augment choice (the timm side gets the same from create_loader's arguments).
AUGMENTATIONS = {"none": dict(hflip=0.0, crop_padding=0), "timm": dict(hflip=0.5, crop_mode="resized")}


def _aug_overrides(args) -> list[str]:
    """The chosen augmentation as `convvit fit` options."""
    return [arg for key, value in AUGMENTATIONS[args.augment].items() for arg in (f"--data.{key}", str(value))]


class PILImages(torch.utils.data.Dataset):
    """An in-memory uint8 dataset as PIL images, with the ``transform`` attribute timm's create_loader sets."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels, self.transform = images.numpy(), labels.tolist(), None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]
        img = Image.fromarray(img[0], "L") if img.shape[0] == 1 else Image.fromarray(img.transpose(1, 2, 0), "RGB")
        return self.transform(img), self.labels[i]


def timm_loader(args):
    """(timm's training loader for the dataset, num_classes, in_chans, img_size)."""
    dm = ImageDataModule(dataset=args.dataset, img_size=args.img_size)
    images, labels = dm._read_tensors("train")
    loader = create_loader(
        PILImages(images, labels), (dm.in_chans, dm.img_size, dm.img_size), args.batch_size, is_training=True,
        no_aug=args.augment == "none", hflip=0.5, color_jitter=0.0, interpolation="bicubic", mean=dm.mean,
        std=dm.std, num_workers=args.num_workers, use_prefetcher=False, device=torch.device("cpu"),
        persistent_workers=False,
    )
    return loader, dm.num_classes, dm.in_chans, dm.img_size


def plain_loop(args, timm_data) -> float:
    """images/s of a hand-written loop on timm's data pipeline (``timm_loader``'s result): same model,
    optimizer groups, loss."""
    loader, num_classes, in_chans, img_size = timm_data
    model = convvit.create_model(args.model, num_classes=num_classes, in_chans=in_chans, img_size=img_size)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = build_optimizer(model, "adamw", args.lr, 0.05, exclude_no_weight_decay=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    model.train()
    steps, start = 0, None
    while steps < args.warmup + args.steps:
        for x, y in loader:
            if steps == args.warmup:
                start = time.perf_counter()
            loss = F.cross_entropy(model(x.contiguous(memory_format=memory_format)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            if steps == args.warmup + args.steps:
                break
    return args.steps * args.batch_size / (time.perf_counter() - start)


def convvit_fit(args) -> float:
    """images/s of `convvit fit` (in-process), timed by a callback over the same steps."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "timing.json")
        timer = {"class_path": f"{StepTimer.__module__}.StepTimer", "init_args": {"path": out, "warmup": args.warmup}}
        rc = convvit_main([
            "fit", "--model.name", args.model, "--model.lr", str(args.lr), "--model.weight_decay", "0.05",
            "--model.channels_last", str(args.channels_last).lower(),
            "--data.dataset", args.dataset, "--data.batch_size", str(args.batch_size),
            "--data.num_workers", str(args.num_workers),
            *(["--data.img_size", str(args.img_size)] if args.img_size else []),
            "--trainer.max_steps", str(args.warmup + args.steps),
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", str(args.progress_bar).lower(),
            "--trainer.default_root_dir", tmp, "--test_after_fit", "false", *_aug_overrides(args),
            "--trainer.callbacks+", json.dumps(timer),
        ])
        if rc != 0:
            raise SystemExit(f"convvit fit failed with exit status {rc}")
        with open(out) as f:
            timing = json.load(f)
    return timing["steps"] * args.batch_size / timing["seconds"]


def _loader_rate(loader, images: int) -> float:
    n, start = 0, time.perf_counter()
    while n < images:
        for x, _ in loader:
            n += x.shape[0]
            if n >= images:
                break
    return n / (time.perf_counter() - start)


def loaders_only(args, timm_data) -> tuple[float, float]:
    """images/s of the training loaders alone (decoding + augmentation + collation): convvit's and timm's."""
    images = (args.warmup + args.steps) * args.batch_size
    dm = ImageDataModule(dataset=args.dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                         img_size=args.img_size, **AUGMENTATIONS[args.augment])
    dm.setup("fit")
    return _loader_rate(dm.train_dataloader(), images), _loader_rate(timm_data[0], images)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_c_nano_32px")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--img_size", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--augment", choices=("none", "timm"), default="none",
                   help="none: the main job's recipe; timm: RandomResizedCrop + flip, per-image on both sides")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels-last memory format on both sides (the main job's setting)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--progress_bar", action="store_true", help="keep convvit's progress bar on")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{args.model} on {args.dataset}, augment {args.augment}, batch {args.batch_size}, "
          f"{args.num_workers} loader workers, channels-last {args.channels_last}, "
          f"{args.threads} threads, {args.steps} timed steps per run", flush=True)
    timm_data = timm_loader(args)  # read and set up once; each round iterates it afresh
    ratios = []
    for r in range(args.rounds):
        plain = plain_loop(args, timm_data)
        ours = convvit_fit(args)
        ratios.append(ours / plain)
        print(f"round {r + 1}: plain loop {plain:7.0f} img/s   convvit fit {ours:7.0f} img/s   "
              f"ratio {ours / plain:.3f}", flush=True)
    ours, timm_rate = loaders_only(args, timm_data)
    print(f"median ratio convvit/plain: {statistics.median(ratios):.3f} (goal >= 0.95)")
    print(f"data loader alone: convvit {ours:.0f} img/s, timm {timm_rate:.0f} img/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
