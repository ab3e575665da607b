"""Images/s of the image-folder input pipelines, convvit's beside timm's ``create_loader``, in one run.

A folder of JPEGs (500x375, the typical ImageNet photo, smooth content plus noise so that they compress like
photos: about 40 KB each) is generated once; each pipeline then delivers finished training batches (float,
normalised, on the CPU) with the same augmentation: RandomResizedCrop to ``--img-size``, horizontal flip,
``--auto-augment``, bicubic, random erasing off. Cases:

* ``convvit_cpu``: ``ImageDataModule(pipeline="cpu")``: workers decode and augment with PIL and return uint8;
  the main process normalises the batch (``finish_batch``).
* ``convvit_device``: ``ImageDataModule(pipeline="device")`` on the CPU: workers read bytes; the main process
  decodes the batch (libjpeg-turbo) and augments it as a batch. On a CPU this is the same code a GPU runs,
  not the speed a GPU gives (benchmarks/gpu_check.py measures that).
* ``timm``: ``timm.data.create_loader(use_prefetcher=True, device=cpu)`` on ``timm.data.ImageDataset``.

Figures are steady state: the first ``--warmup`` batches (worker start-up included) are not timed, then
batches are timed for ``--seconds``. ``per_worker`` divides by the worker count (each worker has one thread).

    python benchmarks/loader.py                       # writes benchmarks/results/loader_cpu.csv
    python benchmarks/loader.py --smoke               # a few batches, writes runs/benchmarks/loader_smoke.csv
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results/loader_cpu.csv"
SMOKE_RESULTS = ROOT / "runs/benchmarks/loader_smoke.csv"
CASES = ("convvit_cpu", "convvit_device", "timm")


def make_jpeg_folder(root: Path, num_images: int, classes: int = 4, size: tuple[int, int] = (500, 375)) -> Path:
    """``root/train/class_k/*.jpg``, made once (kept between runs: the same files for every case)."""
    train = root / "train"
    done = root / f".complete_{num_images}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    for i in range(num_images):
        folder = train / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(1, 8, size=(3, 2))
        phase = rng.uniform(0, 2 * np.pi, size=3)
        base = np.stack([np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + phase[c]) for c in range(3)], -1)
        img = (127.5 + 90 * base + rng.normal(0, 12, size=base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)
    (root / "val").mkdir(exist_ok=True)  # the datamodule wants a validation split; this benchmark does not use it
    for c in range(classes):
        (root / "val" / f"class_{c}").mkdir(exist_ok=True)
        src = next((train / f"class_{c}").iterdir())
        (root / "val" / f"class_{c}" / src.name).write_bytes(src.read_bytes())
    done.touch()
    return root


def convvit_batches(folder: Path, pipeline: str, args):
    from convvit.data import ImageDataModule

    dm = ImageDataModule("imagefolder", str(folder), img_size=args.img_size, batch_size=args.batch_size,
                         num_workers=args.workers, auto_augment=args.auto_augment, crop_mode="resized",
                         pipeline=pipeline, pin_memory=False)
    dm.setup("fit")
    while True:
        for batch in dm.train_dataloader():
            yield dm.finish_batch(batch, train=True)


def timm_batches(folder: Path, args):
    from timm.data import ImageDataset, create_loader

    dataset = ImageDataset(str(folder / "train"))
    loader = create_loader(
        dataset, (3, args.img_size, args.img_size), args.batch_size, is_training=True, hflip=0.5,
        color_jitter=None, auto_augment=args.auto_augment, interpolation="bicubic", num_workers=args.workers,
        device=torch.device("cpu"), use_prefetcher=True, pin_memory=False, persistent_workers=True,
    )
    while True:
        yield from loader


def measure(batches, warmup: int, seconds: float, min_batches: int) -> tuple[float, int]:
    """Images/s over at least ``seconds`` (and ``min_batches``) after ``warmup`` untimed batches."""
    for _ in range(warmup):
        next(batches)
    images, count, start = 0, 0, time.perf_counter()
    while count < min_batches or time.perf_counter() - start < seconds:
        x, _ = next(batches)
        assert x.dtype == torch.float32, x.dtype
        images += len(x)
        count += 1
    return images / (time.perf_counter() - start), images


def machine() -> dict[str, str]:
    """The Fashion-MNIST report's machine description (CPU model, vector/matrix flags, cores, torch) and the
    decoding and augmentation libraries' versions."""
    import timm
    import torchvision

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fashion_mnist_report import machine as cpu_machine

    m = cpu_machine()
    return {"cpu": m["cpu"], "cores": m["cores"], "cpu_flags": m["flags"], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--images", type=int, default=1536)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--auto-augment", default="original", help="timm string; 'none' for no auto-augment")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed seconds per case (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per case")
    parser.add_argument("--rounds", type=int, default=2, help="cases alternate, this many times each")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/benchmarks/jpeg_500x375")
    parser.add_argument("--out", type=Path, default=None, help=f"CSV (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--smoke", action="store_true", help="a few batches; writes under runs/, not results/")
    args = parser.parse_args(argv)
    if args.auto_augment == "none":
        args.auto_augment = None
    if args.smoke:
        args.images, args.seconds, args.warmup, args.rounds, args.batch_size = 64, 0.0, 1, 1, 16
    out = args.out or (SMOKE_RESULTS if args.smoke else RESULTS)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {info['cpu_flags']}; torch {info['torch']}, "
          f"torchvision {info['torchvision']}, timm {info['timm']}", flush=True)
    folder = make_jpeg_folder(args.data, args.images)
    rows = []
    for round_ in range(args.rounds):  # alternate the cases so that a change in machine load hits all of them
        for case in args.cases:
            batches = timm_batches(folder, args) if case == "timm" else convvit_batches(
                folder, case.removeprefix("convvit_"), args)
            load = os.getloadavg()[0]
            rate, images = measure(batches, args.warmup, args.seconds, min_batches=2)
            batches.close()
            row = {"case": case, "round": round_, "images_per_s": round(rate, 1),
                   "per_worker": round(rate / max(args.workers, 1), 1), "workers": args.workers,
                   "batch_size": args.batch_size, "img_size": args.img_size, "auto_augment": args.auto_augment,
                   "timed_images": images, "load_before": round(load, 2), **info}
            rows.append(row)
            print(f"{case:16s} round {round_}: {rate:7.1f} images/s ({row['per_worker']:.1f} per worker), "
                  f"load before {load:.2f}", flush=True)
    best = {c: max(r["images_per_s"] for r in rows if r["case"] == c) for c in args.cases}
    if "timm" in best:
        for case in args.cases:
            if case != "timm":
                print(f"{case} / timm: {best[case] / best['timm']:.2f}x (best round of each)")
    from convvit.fileio import write_csv  # the one CSV writer: atomic, spreadsheet-safe cells

    print(f"wrote {write_csv(out, list(rows[0]), rows)}")


if __name__ == "__main__":
    sys.exit(main())
