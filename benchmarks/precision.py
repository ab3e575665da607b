"""fp32 against bf16 autocast training steps on this machine, for models of increasing size.

The measurement behind ``--trainer.precision auto`` (convvit.training.precision): on CPUs with bf16 units
(avx512_bf16, AMX) bf16 autocast pays for its casts only above some model size; on CPUs without them it is many
times slower. Each model's fp32 and bf16 steps are timed alternately (AdamW, cross-entropy, channels-last),
several rounds, and the median images/s and the ratio bf16 / fp32 are printed beside the CPU's model and flags.

    python benchmarks/precision.py
    python benchmarks/precision.py --models vit_c_nano_32px vit_c_tiny_32px --rounds 5 --csv /tmp/precision.csv
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import train_step, write_csv  # noqa: E402  (the step every benchmark here times)

import convvit  # noqa: E402
from convvit.models.complexity import count_complexity  # noqa: E402
from convvit.training.precision import cpu_bf16_flags, cpu_model_name  # noqa: E402

# (model, img_size, in_chans, batch): the Fashion-MNIST main job's model, the CIFAR-size twin, and ImageNet sizes.
DEFAULT_CASES = [
    ("vit_c_nano_32px", 28, 1, 128),
    ("vit_c_nano_32px", 32, 3, 128),
    ("vit_c_tiny_32px", 32, 3, 128),
    ("vit_c_1gf", 224, 3, 32),
    ("vit_c_4gf", 224, 3, 16),
]


def measure(name: str, img_size: int, in_chans: int, batch_size: int, rounds: int, iters: int) -> dict:
    torch.manual_seed(0)
    batch = torch.randn(batch_size, in_chans, img_size, img_size).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 10, (batch_size,))
    steps = {}
    for precision in ("fp32", "bf16"):
        model = convvit.create_model(name, num_classes=10, img_size=img_size, in_chans=in_chans)
        model.to(memory_format=torch.channels_last).train()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        steps[precision] = train_step(model, batch, target, autocast, fused=True)
        steps[precision]()  # warm-up: allocator, oneDNN primitives, optimizer state
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(rounds):
        for precision in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            start = time.perf_counter()
            for _ in range(iters):
                steps[precision]()
            times[precision].append(time.perf_counter() - start)
    ips = {k: batch_size * iters / statistics.median(v) for k, v in times.items()}
    macs = count_complexity(name, img_size=img_size, in_chans=in_chans)["flops"]
    return dict(model=name, img_size=img_size, in_chans=in_chans, batch=batch_size, gmacs=round(macs / 1e9, 4),
                fp32_img_s=round(ips["fp32"], 1), bf16_img_s=round(ips["bf16"], 1),
                bf16_over_fp32=round(ips["bf16"] / ips["fp32"], 3))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="model names (each at its default case)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c for c in DEFAULT_CASES if args.models is None or c[0] in args.models]
    flags = cpu_bf16_flags()
    print(f"CPU: {cpu_model_name()}; bf16 units: {', '.join(flags) or 'none'}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    rows = []
    for case in cases:
        row = measure(*case, rounds=args.rounds, iters=args.iters)
        rows.append(row)
        print(f"{row['model']:16s} {row['img_size']:3d} px x{row['in_chans']} batch {row['batch']:3d} "
              f"{row['gmacs']:7.3f} GMACs  fp32 {row['fp32_img_s']:8.1f} img/s  bf16 {row['bf16_img_s']:8.1f} img/s  "
              f"bf16/fp32 {row['bf16_over_fp32']:.2f}", flush=True)
    if args.csv:
        write_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
