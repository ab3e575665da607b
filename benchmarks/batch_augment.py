"""Images/s of the batched AutoAugment/RandAugment (convvit.data.batch_augment) on the CPU, one thread, beside
timm's per-image PIL transform (the CPU path's auto_augment stage) on the same images.

    python benchmarks/batch_augment.py                       # batch 64 of 3x224x224, writes the CSV below
    python benchmarks/batch_augment.py --batches 3 --configs original

Both sides run the same policy with the same interpolation (bicubic, convvit's default) on the same 64 images:
timm on PIL images one at a time, the batched version on one uint8 (64, 3, 224, 224) tensor. Figures are the
median over ``--batches`` repeats after one warm-up, the two sides taking turns; the machine and its load are
printed and written with them.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convvit.data.batch_augment import build_batch_auto_augment
from convvit.data.settings import Augmentation
from convvit.data.transforms import build_color_transform

MEAN = (0.485, 0.456, 0.406)
RESULTS = Path(__file__).parent / "results" / "batch_augment_cpu.csv"


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
        flags = next((line for line in lscpu.splitlines() if line.startswith("Flags")), "")
        simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
        return f"{model} ({', '.join(simd) or 'no AVX2'})"
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def sample_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Photo-like uint8 images (n, size, size, 3): smooth colour fields, edges and noise, so that equalize,
    autocontrast and the resamplers see realistic histograms and gradients."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        f = rng.uniform(0.01, 0.08, (3, 2))
        phase = rng.uniform(0, 6.3, 3)
        img = np.stack([128 + 90 * np.sin(xx * f[c, 0] + phase[c]) * np.cos(yy * f[c, 1]) for c in range(3)], -1)
        x0, y0 = rng.integers(0, size // 2, 2)
        img[y0:y0 + size // 3, x0:x0 + size // 4] = rng.uniform(0, 255, 3)
        out[i] = (img + rng.normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)
    return out


def timed_alternately(fns: list, repeats: int) -> list[float]:
    """Median seconds of each function, run in turns so that a shared machine's load falls on all alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["rand-m9-mstd0.5-inc1", "original"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cpu = machine()
    load = os.getloadavg()[0]
    print(f"machine: {cpu}, {os.cpu_count()} cores, load average {load:.2f}; torch {torch.__version__}, 1 thread")
    arrays = sample_images(args.batch_size, args.img_size)
    pil_images = [Image.fromarray(a) for a in arrays]
    batch = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()

    rows = []
    for config in args.configs:
        timm_tf = build_color_transform(args.img_size, MEAN, Augmentation(auto_augment=config), "bicubic")
        batched = build_batch_auto_augment(config, MEAN, interpolation="bicubic")
        generator = torch.Generator().manual_seed(0)
        t_timm, t_batch = timed_alternately([lambda tf=timm_tf: [tf(img) for img in pil_images],
                                             lambda aug=batched, g=generator: aug(batch, g)], args.batches)
        for impl, seconds in (("timm_pil_per_image", t_timm), ("convvit_batched", t_batch)):
            rate = args.batch_size / seconds
            rows.append(dict(config=config, implementation=impl, batch_size=args.batch_size,
                             img_size=args.img_size, threads=1, images_per_s=round(rate, 1), machine=cpu,
                             load_average=round(load, 2), torch=torch.__version__))
            print(f"{config:24s} {impl:20s} {rate:8.1f} images/s")
        print(f"{config:24s} batched / timm: {t_timm / t_batch:.2f}x")

    from convvit.fileio import write_csv  # the one CSV writer: atomic, spreadsheet-safe cells

    print(f"wrote {write_csv(args.out, list(rows[0]), rows)}")


if __name__ == "__main__":
    main()
