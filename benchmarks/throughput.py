"""Throughput of convvit models against the implementations users would otherwise pick.

For each pair (convvit model, peer model) and each mode (forward, full train step) and precision
(fp32, bf16 autocast), the two models are timed alternately in one process, several rounds, and
the median images/s of each is reported with the ratio convvit / peer (> 1.0: convvit is faster).

    python benchmarks/throughput.py                      # deit_small vs timm, batch 32, 224 px
    python benchmarks/throughput.py --pairs deit_small --rounds 7 --csv docs/throughput.csv
    python benchmarks/throughput.py --pairs convit_tiny cvt_13   # vs timm convit_tiny, HF CvT-13
    python benchmarks/throughput.py --pairs cvt_13 --precisions fp32 --batch-size 8 --threads 1 --profile

``--profile`` then runs --iters steps of each side under torch.profiler and prints where the time goes, by
kind of operator, side by side: what a faster implementation could still win, and what both must spend.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import convvit
from convvit import fileio


@dataclass
class Pair:
    """A convvit model and its peer; both builders take (img_size, num_classes) and return a logits model."""

    ours: Callable[[int, int], nn.Module]
    peer: Callable[[int, int], nn.Module]
    peer_name: str


def _timm(name: str) -> Callable[[int, int], nn.Module]:
    def build(img_size: int, num_classes: int) -> nn.Module:
        import timm

        return timm.create_model(name, img_size=img_size, num_classes=num_classes)

    return build


def _convvit(name: str) -> Callable[[int, int], nn.Module]:
    return lambda img_size, num_classes: convvit.create_model(name, img_size=img_size, num_classes=num_classes)


class _Logits(nn.Module):
    """Wrap a Hugging Face image classifier so it returns the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def _hf_cvt_13(img_size: int, num_classes: int) -> nn.Module:
    from transformers import CvtConfig, CvtForImageClassification

    # CvtConfig's defaults are CvT-13's (64/192/384 wide, 1/2/10 blocks, 1/3/6 heads).
    return _Logits(CvtForImageClassification(CvtConfig(num_labels=num_classes)))


PAIRS: dict[str, Pair] = {
    "deit_small": Pair(_convvit("deit_small"), _timm("deit_small_patch16_224"), "timm deit_small_patch16_224"),
    "convit_tiny": Pair(_convvit("convit_tiny"), _timm("convit_tiny"), "timm convit_tiny"),
    # convvit's default cvt_13 (official QuickGELU) against Hugging Face's (nn.GELU): what each user gets.
    "cvt_13": Pair(_convvit("cvt_13"), _hf_cvt_13, "HF CvtForImageClassification (CvT-13)"),
    # The paper's twins at equal flops: what the convolutional stem costs or saves per image.
    "vit_c_4gf": Pair(_convvit("vit_c_4gf"), _convvit("vit_p_4gf"), "convvit vit_p_4gf (patchify twin)"),
}


def _step_fn(model: nn.Module, mode: str, precision: str, batch: torch.Tensor, target: torch.Tensor):
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    if mode == "forward":
        model.eval()

        def step() -> None:
            with torch.inference_mode(), autocast:
                model(batch)

        return step
    model.train()
    return train_step(model, batch, target, autocast)


def train_step(model: nn.Module, batch: torch.Tensor, target: torch.Tensor, autocast, fused: bool = False,
               forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[[], None]:
    """One AdamW step (cross-entropy under ``autocast``) on a fixed batch: the training step every benchmark here
    times. ``forward`` defaults to the model itself (pass a compiled one to time that)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)
    forward = forward or model

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(forward(batch), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# Operator kinds of --profile, by ATen name (self time, so nested ops are not counted twice). Matrix products
# are the work both sides must do; the fused attention kernel holds the attention's products and its softmax.
OP_KINDS: dict[str, tuple[str, ...]] = {
    "matrix products (mm, addmm, bmm)": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "fused attention (SDPA kernels)": ("aten::_scaled_dot_product",),
    "convolutions": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                     "aten::_slow_conv2d", "aten::thnn_conv2d", "aten::_mkldnn_"),
    "norms": ("aten::native_layer_norm", "aten::native_batch_norm", "aten::_batch_norm"),
    "softmax": ("aten::_softmax",),
    "copies": ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat"),
}
OTHER = "everything else (elementwise, optimizer, ...)"
TOTAL = "total of ATen operators (no Python overhead)"


def op_kind(name: str) -> str:
    for kind, prefixes in OP_KINDS.items():
        if name.startswith(prefixes):
            return kind
    return OTHER


def profile_ms(step: Callable[[], None], iters: int) -> dict[str, float]:
    """Milliseconds per step by operator kind (self CPU time of ``iters`` profiled steps), and their TOTAL."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            step()
    kinds = dict.fromkeys([*OP_KINDS, OTHER], 0.0)
    for event in prof.key_averages():
        if event.key.startswith("aten::"):  # autograd nodes and Python scopes hold no time of their own
            kinds[op_kind(event.key)] += event.self_cpu_time_total / 1e3 / iters
    kinds[TOTAL] = sum(kinds.values())
    return kinds


def print_profile(steps: dict[str, Callable[[], None]], iters: int, peer_name: str) -> dict[str, dict[str, float]]:
    ms = {key: profile_ms(step, iters) for key, step in steps.items()}
    print(f"  {f'profile, ms per step ({iters} step(s) each)':48s} {'convvit':>9s} {'peer':>9s}  ({peer_name})")
    for kind in ms["convvit"]:
        print(f"  {kind:48s} {ms['convvit'][kind]:9.1f} {ms['peer'][kind]:9.1f}")
    return ms


def write_csv(rows: list[dict], path) -> None:
    fileio.write_csv(path, list(rows[0]), rows)  # atomic and spreadsheet-safe, as every CSV convvit writes


def _time(step: Callable[[], None], iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    batch = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    target = torch.randint(0, args.num_classes, (args.batch_size,))
    rows = []
    for pair_name in args.pairs:
        pair = PAIRS[pair_name]
        models = {"convvit": pair.ours(args.img_size, args.num_classes),
                  "peer": pair.peer(args.img_size, args.num_classes)}
        n_ours = sum(p.numel() for p in models["convvit"].parameters())
        n_peer = sum(p.numel() for p in models["peer"].parameters())
        if n_ours != n_peer:
            print(f"warning: {pair_name}: {n_ours} vs {n_peer} parameters", file=sys.stderr)
        for mode in args.modes:
            for precision in args.precisions:
                steps = {k: _step_fn(m, mode, precision, batch, target) for k, m in models.items()}
                for step in steps.values():  # warm-up (allocator, kernels, optimizer state)
                    _time(step, args.warmup)
                times: dict[str, list[float]] = {"convvit": [], "peer": []}
                for r in range(args.rounds):
                    order = ["convvit", "peer"] if r % 2 == 0 else ["peer", "convvit"]
                    for key in order:
                        times[key].append(_time(steps[key], args.iters))
                ips = {k: args.batch_size * args.iters / statistics.median(v) for k, v in times.items()}
                row = dict(
                    model=pair_name, peer=pair.peer_name, mode=mode, precision=precision,
                    convvit_img_s=round(ips["convvit"], 2), peer_img_s=round(ips["peer"], 2),
                    ratio=round(ips["convvit"] / ips["peer"], 3),
                )
                rows.append(row)
                print(
                    f"{pair_name:12s} {mode:8s} {precision:5s} convvit {row['convvit_img_s']:9.2f} img/s   "
                    f"{pair.peer_name} {row['peer_img_s']:9.2f} img/s   ratio {row['ratio']:.3f}",
                    flush=True,
                )
                if args.profile:
                    print_profile(steps, args.iters, pair.peer_name)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["deit_small"], choices=sorted(PAIRS))
    parser.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the median is reported")
    parser.add_argument("--iters", type=int, default=2, help="steps per timing")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile --iters steps of each side: ms per step by operator kind")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from convvit.training.precision import cpu_bf16_flags, cpu_model_name

    print(f"CPU: {cpu_model_name()}; bf16 units: {', '.join(cpu_bf16_flags()) or 'none'}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {args.batch_size}, {args.img_size} px")
    rows = run(args)
    if args.csv:
        write_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
