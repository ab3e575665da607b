"""Training images/s: `convvit fit` against a plain PyTorch loop, and the data loader alone.

Both train the same model with the same batch, optimizer and augmentation: the plain loop iterates the very
DataLoader that convvit's data module builds (timm's transforms), so the ratio measures what Lightning and
convvit's module add (logging, NaN checks, schedulers, callbacks). Runs are interleaved (plain, convvit,
plain, ...) so that a shared, noisy machine affects both alike.

    python benchmarks/train_throughput.py                          # Fashion-MNIST, vit_c_nano_32px, batch 128
    python benchmarks/train_throughput.py --dataset synthetic --model vit_p_nano_32px --rounds 5

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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin on a shared machine

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import convvit  # noqa: E402
from convvit.data import ImageDataModule  # noqa: E402
from convvit.training.cli import main as convvit_main  # noqa: E402
from convvit.training.optim import build_optimizer  # noqa: E402


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


def _data(args) -> ImageDataModule:
    dm = ImageDataModule(dataset=args.dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                         img_size=args.img_size)
    dm.setup("fit")
    return dm


def plain_loop(args) -> float:
    """images/s of a hand-written loop: same model, optimizer groups, loss and loader."""
    dm = _data(args)
    model = convvit.create_model(args.model, num_classes=dm.num_classes, in_chans=dm.in_chans, img_size=dm.img_size)
    opt = build_optimizer(model, "adamw", args.lr, 0.05, exclude_no_weight_decay=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    model.train()
    steps, start = 0, None
    while steps < args.warmup + args.steps:
        for x, y in dm.train_dataloader():
            if steps == args.warmup:
                start = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
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
        timer = {"class_path": "__main__.StepTimer", "init_args": {"path": out, "warmup": args.warmup}}
        rc = convvit_main([
            "fit", "--model.name", args.model, "--model.lr", str(args.lr), "--model.weight_decay", "0.05",
            "--data.dataset", args.dataset, "--data.batch_size", str(args.batch_size),
            "--data.num_workers", str(args.num_workers), *(["--data.img_size", str(args.img_size)] if args.img_size else []),
            "--trainer.max_steps", str(args.warmup + args.steps),
            "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", str(args.progress_bar).lower(),
            "--trainer.default_root_dir", tmp, "--test_after_fit", "false",
            "--trainer.callbacks+", json.dumps(timer),
        ])
        if rc != 0:
            raise SystemExit(f"convvit fit failed with exit status {rc}")
        with open(out) as f:
            timing = json.load(f)
    return timing["steps"] * args.batch_size / timing["seconds"]


def loader_only(args) -> float:
    """images/s of the training DataLoader alone (decoding + augmentation + collation)."""
    dm = _data(args)
    n, start = 0, time.perf_counter()
    while n < (args.warmup + args.steps) * args.batch_size:
        for x, _ in dm.train_dataloader():
            n += x.shape[0]
            if n >= (args.warmup + args.steps) * args.batch_size:
                break
    return n / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_c_nano_32px")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--img_size", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=60, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--progress_bar", action="store_true", help="keep convvit's progress bar on")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.model} on {args.dataset}, batch {args.batch_size}, {args.num_workers} loader workers, "
          f"{args.threads} threads, {args.steps} timed steps per run", flush=True)
    ratios = []
    for r in range(args.rounds):
        plain = plain_loop(args)
        ours = convvit_fit(args)
        ratios.append(ours / plain)
        print(f"round {r + 1}: plain loop {plain:7.0f} img/s   convvit fit {ours:7.0f} img/s   "
              f"ratio {ours / plain:.3f}", flush=True)
    loader = loader_only(args)
    print(f"median ratio convvit/plain: {statistics.median(ratios):.3f} (goal >= 0.95)")
    print(f"data loader alone: {loader:.0f} img/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
