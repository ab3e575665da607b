"""Images/s of the training data loader alone (no model), to show it is never the bottleneck.

Cases: Fashion-MNIST with the main job's augmentation (padded random crop + horizontal flip, augmented a batch
at a time), the same augmentation through timm/torchvision's per-image PIL pipeline for comparison, Fashion-MNIST
with RandAugment (per-image), and CIFAR-style synthetic 32 px RGB; each with 0 and 2 workers.

    python benchmarks/dataloader.py                  # all cases, prints a table, writes runs/benchmarks/dataloader.csv
    python benchmarks/dataloader.py --batches 100 --workers 2 --cases fmnist synthetic32
    python benchmarks/dataloader.py --model vit_c_nano_32px --cases fmnist --batches 60   # + training overhead

Figures are steady-state images/s over ``--batches`` batches after the first one (whose time, worker start-up
included, is reported separately as ``first_batch_s``). With ``--model NAME`` each case also times training
steps (forward, backward, AdamW) of that model fed by the loader, against the same steps on one batch held in
memory (no loader at all): ``train_images_per_s`` vs ``train_no_loader_images_per_s`` is what loading costs
the training run on this machine, whose cores the loader workers share with training.
"""
from __future__ import annotations

import argparse
import itertools
import os
import resource
import time

import torch
from torch.utils.data import DataLoader

from convvit.data import ImageDataModule, TensorImageDataset

CASES = {
    # name: (ImageDataModule kwargs, per-image pipeline instead of the batched one)
    "fmnist": (dict(dataset="fashion_mnist"), False),
    "fmnist_per_image": (dict(dataset="fashion_mnist"), True),
    "fmnist_randaug": (dict(dataset="fashion_mnist", auto_augment="rand-m9-mstd0.5-inc1"), False),
    "synthetic32": (dict(dataset="synthetic", img_size=32, in_chans=3, synthetic_size=50_000), False),
}


def train_loader(kwargs: dict, per_image: bool, batch_size: int, workers: int, path: str | None) -> DataLoader:
    if path and kwargs["dataset"] == "fashion_mnist":
        kwargs = {**kwargs, "path": path}
    dm = ImageDataModule(batch_size=batch_size, num_workers=workers, persistent_workers=False, **kwargs)
    dm.setup("fit")
    if not per_image:
        return dm.train_dataloader()
    ds = dm.train_set
    dm.train_set = TensorImageDataset(ds.images, ds.labels, ds.in_chans, transform=dm.train_transform)
    return dm.train_dataloader()


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished (joined) children, i.e. the loader workers."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def measure(loader: DataLoader, batches: int) -> tuple[float, float, float]:
    """(images/s over ``batches`` batches after the first, seconds to the first batch, CPU microseconds per
    image over the whole run, workers included). Wall-clock rates depend on what else runs on the machine;
    CPU time per image much less so."""
    cpu0, start = _cpu_seconds(), time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - start
    n, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(it):
        n += len(x)
        if i + 1 == batches:
            break
    rate = n / (time.perf_counter() - start)
    it._shutdown_workers() if hasattr(it, "_shutdown_workers") else None  # join workers: their CPU time counts
    del it
    return rate, first, (_cpu_seconds() - cpu0) / (n + loader.batch_size) * 1e6


def train_rate(model: torch.nn.Module, batches, steps: int) -> float:
    """Training images/s of ``model`` over ``steps`` steps drawn from the iterable ``batches`` (after 2 warm-up)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it = iter(batches)
    n = 0
    for i in range(steps + 2):
        if i == 2:
            n, start = 0, time.perf_counter()
        x, y = next(it)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(x)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=150, help="batches timed per case (after the first)")
    parser.add_argument("--path", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    parser.add_argument("--csv", default="runs/benchmarks/dataloader.csv")
    parser.add_argument("--model", default=None, help="also time training steps of this convvit model")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, {args.batches} batches per case")
    print(f"load average {os.getloadavg()[0]:.1f} (other processes share these cores: compare cpu_us_per_image)")
    header = f"{'case':<18} {'workers':>7} {'images/s':>10} {'cpu_us/image':>13} {'first_batch_s':>14}"
    print(header + (f" {'train_img/s':>12} {'no_loader':>10}" if args.model else ""))
    rows = []
    for case in args.cases:
        kwargs, per_image = CASES[case]
        model = no_loader = None
        for workers in args.workers:
            loader = train_loader(dict(kwargs), per_image, args.batch_size, workers, args.path)
            rate, first, cpu = measure(loader, args.batches)
            row = dict(case=case, workers=workers, batch_size=args.batch_size, images_per_s=round(rate),
                       cpu_us_per_image=round(cpu, 1), first_batch_s=round(first, 3))
            line = f"{case:<18} {workers:>7} {rate:>10,.0f} {cpu:>13.1f} {first:>14.2f}"
            if args.model:
                if model is None:
                    import convvit

                    x, y = next(iter(loader))
                    model = convvit.create_model(args.model, num_classes=10, img_size=x.shape[-1],
                                                 in_chans=x.shape[1])
                    no_loader = train_rate(model, itertools.repeat((x, y)), args.batches)
                row.update(train_images_per_s=round(train_rate(model, loader, args.batches)),
                           train_no_loader_images_per_s=round(no_loader))
                line += f" {row['train_images_per_s']:>12,} {row['train_no_loader_images_per_s']:>10,}"
            del loader
            rows.append(row)
            print(line, flush=True)
    if args.csv:
        from convvit.fileio import write_csv  # the one CSV writer: atomic, spreadsheet-safe cells

        print(f"wrote {write_csv(args.csv, list(rows[0]), rows)}")


if __name__ == "__main__":
    main()
