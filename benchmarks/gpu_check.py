"""GPU check: convvit's training step against timm and Hugging Face on one GPU, in one command.

What it measures, each figure printed beside the machine it came from:

* the GPU (name, memory, multiprocessors), torch / CUDA / cuDNN versions, and a measured bf16 matrix-product
  ceiling (8192^3, median of 10 after warm-up);
* training steps (AdamW, cross-entropy, bf16 autocast, channels-last, ``torch.compile`` on both sides, batch 256,
  224 px), convvit and its peer timed alternately after warm-up, several rounds, median images/s and the ratio
  convvit / peer (> 1.0: convvit is faster). Pairs: deit_small / timm deit_small_patch16_224, convit_tiny /
  timm convit_tiny, cvt_13 / Hugging Face CvT-13, and vit_c_4gf / vit_p_4gf (the paper's twins);
* peak memory of each model's steady-state training step (its own weights, gradients, optimizer state and
  activations: allocations of the other resident models are subtracted);
* model FLOP utilisation of vit_c_4gf training: 3 x forward flops (2 x the paper's multiply-adds) per image,
  against the GPU's dense bf16 datasheet peak and against the measured matrix-product ceiling;
* the image-folder input pipelines (convvit's ImageDataModule, ``pipeline`` "cpu" and "device", the paper's
  AutoAugment training transform, one worker per CPU core) over JPEGs written for the check: finished batches
  on the GPU per second in steady state, beside vit_c_4gf's training images/s: is the loader the bottleneck?
* end to end: ``Trainer.fit`` of vit_c_4gf fed by each pipeline against the same fit fed one batch held on the
  GPU (the model's ceiling), with the GPU's utilisation;
* inference as ``convvit predict --device cuda`` runs it (:class:`convvit.inference.runner.InferenceModel`:
  channels-last, ``torch.inference_mode``), batch 256, for the models of benchmarks/predict.py: fp32 (TF32 matrix
  products), ``--precision auto`` (bf16 weights on GPUs with bf16) and auto under ``torch.compile``, timed
  alternately; ``--infer-only`` runs just this table.

    python benchmarks/gpu_check.py                     # on a CUDA machine, a few minutes
    python benchmarks/gpu_check.py --csv benchmarks/results/gpu.csv   # records the figures the README quotes
    python benchmarks/gpu_check.py --smoke             # tiny sizes on CPU (what the tests run), to runs/benchmarks/
    python benchmarks/gpu_check.py --pairs deit_small --csv /tmp/gpu.csv

The rows go to ``--csv`` (which a real run must name; --smoke: runs/benchmarks/gpu_smoke.csv) in long form: section, item, value, unit, detail.
"""  # noqa: E501
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import PAIRS, train_step  # noqa: E402  (the same pairs and step as the CPU benchmark)

import convvit  # noqa: E402
from convvit import fileio  # noqa: E402
from convvit.models.complexity import count_complexity  # noqa: E402

# In the order they run: the pairs with goals beyond parity first, so that a budget cut drops the cheap ones.
DEFAULT_PAIRS = ("vit_c_4gf", "cvt_13", "deit_small", "convit_tiny")

# The models of benchmarks/predict.py, the CPU inference table.
INFER_MODELS = ("vit_c_1gf", "vit_c_4gf", "deit_small", "convit_small", "cvt_13")

# Dense (no structured sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, in TFLOP/s. The H200 has the
# H100 SXM's compute (989.4) with more memory; PCIe/NVL parts run lower clocks.
DATASHEET_BF16_TFLOPS = {
    "H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0,
    "A100": 312.0, "L40S": 362.1, "L4": 121.0, "A10": 125.0,
}

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "benchmarks" / "results" / "gpu.csv"  # the committed H200 figures the README quotes
SMOKE_CSV = Path("runs") / "benchmarks" / "gpu_smoke.csv"


def datasheet_peak(gpu_name: str) -> tuple[float | None, str]:
    """The dense bf16 peak (TFLOP/s) for a GPU name as CUDA reports it, and which datasheet entry matched."""
    for key in sorted(DATASHEET_BF16_TFLOPS, key=len, reverse=True):  # most specific first
        if all(word in gpu_name for word in key.split()):
            return DATASHEET_BF16_TFLOPS[key], key
    return None, ""


class Recorder:
    """Collects the rows of the CSV and prints each as it comes."""

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name
        self.rows: list[dict] = []

    def add(self, section: str, item: str, value, unit: str = "", detail: str = "") -> None:
        value = round(value, 4) if isinstance(value, float) else value
        self.rows.append(dict(device=self.device_name, section=section, item=item, value=value, unit=unit,
                              detail=detail))
        print(f"  {section:8s} {item:44s} {value!s:>12} {unit:10s} {detail}", flush=True)

    def write(self, path: Path) -> None:
        fileio.write_csv(path, ["device", "section", "item", "value", "unit", "detail"], self.rows)


# ----------------------------------------------------------------------------------------------------- machine
def describe_machine(device: torch.device) -> tuple[str, dict[str, str]]:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu_cores": str(os.cpu_count())}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name = props.name
        info.update(gpu=name, memory_gib=f"{props.total_memory / 2**30:.1f}",
                    multiprocessors=str(props.multi_processor_count),
                    capability=f"{props.major}.{props.minor}", cuda=str(torch.version.cuda),
                    cudnn=str(torch.backends.cudnn.version()))
    else:
        name = _cpu_model()
        info.update(cpu=name)
    for pkg in ("timm", "transformers", "lightning"):
        try:
            info[pkg] = __import__(pkg).__version__
        except ImportError:
            info[pkg] = "not installed"
    return name, info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling_tflops(device: torch.device, n: int, repeats: int = 10) -> float:
    """Median bf16 rate of an n x n x n matrix product on random data (never zeros: they run faster)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e12


# ------------------------------------------------------------------------------------------------ train steps
def _memory_allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def _peak_allocated(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def make_train_step(model: nn.Module, batch: torch.Tensor, target: torch.Tensor, compile: bool) -> Callable[[], None]:
    """One AdamW step of ``model`` on a fixed batch under bf16 autocast (channels-last where the input is)."""
    device = batch.device
    model.to(device=device, memory_format=torch.channels_last).train()
    forward = torch.compile(model) if compile else model
    return train_step(model, batch, target, torch.autocast(device.type, dtype=torch.bfloat16),
                      fused=device.type == "cuda", forward=forward)


def _time_steps(step: Callable[[], None], iters: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return time.perf_counter() - start


def time_pair(pair_name: str, args: argparse.Namespace, device: torch.device, rec: Recorder) -> dict[str, float]:
    """Build, compile and warm up both models of a pair one after the other, then time them alternately."""
    pair = PAIRS[pair_name]
    torch.manual_seed(0)
    batch = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    batch = batch.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    builders = {"convvit": pair.ours, "peer": pair.peer}
    steps, resident, peak = {}, {}, {}
    for side, build in builders.items():
        before = _memory_allocated(device)
        start = time.perf_counter()
        steps[side] = make_train_step(build(args.img_size, args.num_classes), batch, target, args.compile)
        for _ in range(args.warmup - 1):  # the first steps compile and autotune
            steps[side]()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        steps[side]()  # a steady-state step: its peak is the model's working footprint
        _sync(device)
        warm_s = time.perf_counter() - start
        peak[side] = _peak_allocated(device) - before
        resident[side] = _memory_allocated(device) - before  # weights + optimizer state, kept while the other runs
        rec.add("warmup", f"{pair_name} {side}", warm_s, "s", f"build + compile + {args.warmup} steps")
    times: dict[str, list[float]] = {side: [] for side in steps}
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for side in order:
            times[side].append(_time_steps(steps[side], args.iters, device))
    ips = {side: args.batch_size * args.iters / statistics.median(t) for side, t in times.items()}
    spread = {side: (args.batch_size * args.iters / max(t), args.batch_size * args.iters / min(t))
              for side, t in times.items()}
    detail = f"batch {args.batch_size}, {args.img_size} px, bf16 autocast, channels-last, compile={args.compile}"
    rec.add("train", f"{pair_name} convvit", ips["convvit"], "img/s",
            f"{detail}; rounds {spread['convvit'][0]:.0f}-{spread['convvit'][1]:.0f}")
    rec.add("train", f"{pair_name} peer: {pair.peer_name}", ips["peer"], "img/s",
            f"rounds {spread['peer'][0]:.0f}-{spread['peer'][1]:.0f}")
    rec.add("train", f"{pair_name} ratio convvit/peer", ips["convvit"] / ips["peer"], "x",
            f"median of {args.rounds} interleaved rounds of {args.iters} steps")
    if device.type == "cuda":
        rec.add("memory", f"{pair_name} convvit", peak["convvit"] / 2**30, "GiB", "peak of a training step")
        rec.add("memory", f"{pair_name} peer: {pair.peer_name}", peak["peer"] / 2**30, "GiB",
                "peak of a training step")
    del steps
    return ips


def report_mfu(ips: float, args: argparse.Namespace, ceilings: dict[str, tuple[float, str]], rec: Recorder) -> None:
    """Model FLOP utilisation of vit_c_4gf training: 3 x the forward pass's FLOPs (2 per multiply-add) per image."""
    macs = count_complexity("vit_c_4gf", img_size=args.img_size, num_classes=args.num_classes)["flops"]
    achieved = ips * 3 * 2 * macs / 1e12
    rec.add("mfu", "vit_c_4gf training", achieved, "TFLOP/s",
            f"{ips:.0f} img/s x 3 x 2 x {macs / 1e9:.3f} G multiply-adds")
    for label, (peak, source) in ceilings.items():
        rec.add("mfu", f"vit_c_4gf vs {label}", 100 * achieved / peak, "%", f"{peak:.1f} TFLOP/s ({source})")


# ---------------------------------------------------------------------------------------------------- loader
def _write_jpeg(job: tuple[str, int, int, int]) -> None:
    """A smooth random photo-like JPEG (low-frequency noise upsampled, plus grain) of an ImageNet-like size."""
    import numpy as np
    from PIL import Image

    path, seed, width, height = job
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    img = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)


def make_image_folder(root: Path, num_images: int, num_classes: int, size: tuple[int, int], workers: int) -> None:
    jobs = []
    for i in range(num_images):
        folder = root / "train" / f"class_{i % num_classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(folder / f"{i:06d}.jpg"), i, *size))
    with Pool(workers) as pool:
        pool.map(_write_jpeg, jobs, chunksize=16)


def loader_images_per_s(args: argparse.Namespace, device: torch.device, rec: Recorder) -> dict[str, float]:
    """Both image-folder pipelines in steady state, then the end-to-end training rate on the folder against the
    same training on one batch held on the device (the model's ceiling). Returns images/s per pipeline."""
    workers = args.loader_workers or os.cpu_count() or 1
    rates = {}
    with tempfile.TemporaryDirectory(prefix="convvit-gpu-check-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_image_folder(root, args.loader_images, 16, tuple(args.loader_image_size), workers)
        rec.add("loader", "jpeg folder written", time.perf_counter() - start, "s",
                f"{args.loader_images} JPEGs of {args.loader_image_size[0]}x{args.loader_image_size[1]} px")
        for pipeline in ("cpu", "device"):
            rates[pipeline] = pipeline_images_per_s(root, pipeline, args, device, workers)
            rec.add("loader", f"imagefolder {pipeline} pipeline", rates[pipeline], "img/s",
                    f"AutoAugment 'original' + RandomResizedCrop + flip, normalised on {device.type}, {workers} "
                    f"workers, batch {args.batch_size}, {args.loader_seconds:.0f} s after {args.loader_warmup} "
                    "batches")
        if not args.skip_fit:
            end_to_end(root, args, device, rec, workers)
    return rates


def _image_data(root: Path, pipeline: str, args: argparse.Namespace, device: torch.device, workers: int):
    from convvit.data import ImageDataModule

    return ImageDataModule(
        dataset="imagefolder", path=str(root), img_size=args.img_size, batch_size=args.batch_size,
        num_workers=workers, auto_augment="original", crop_mode="resized", val_fraction=0.01, pipeline=pipeline,
        pin_memory=device.type == "cuda",
    )


def pipeline_images_per_s(root: Path, pipeline: str, args: argparse.Namespace, device: torch.device,
                          workers: int) -> float:
    """Finished training batches (decoded, augmented, normalised, on ``device``) per second, in steady state."""
    data = _image_data(root, pipeline, args, device, workers)
    data.setup("fit")

    def batches():
        while True:
            for batch in data.train_dataloader():
                yield data.finish_batch(batch, train=True, device=device)

    stream = batches()
    for _ in range(args.loader_warmup):  # worker start-up, nvJPEG handles, first kernels
        next(stream)
    _sync(device)
    images, start = 0, time.perf_counter()
    while images == 0 or time.perf_counter() - start < args.loader_seconds:
        images += len(next(stream)[0])
    _sync(device)
    rate = images / (time.perf_counter() - start)
    stream.close()
    return rate


class _GpuUtilisation:
    """Mean GPU utilisation (nvidia-smi's utilization.gpu, sampled every 0.5 s) while it is open."""

    def __init__(self, device: torch.device):
        self.index = device.index or 0
        self.samples: list[float] = []
        self._stop = None

    def __enter__(self):
        import subprocess
        import threading

        self._stop = threading.Event()

        def sample():
            cmd = ["nvidia-smi", "-i", str(self.index), "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            while not self._stop.wait(0.5):
                try:
                    self.samples.append(float(subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout))
                except (OSError, ValueError, subprocess.SubprocessError):
                    return

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def end_to_end(root: Path, args: argparse.Namespace, device: torch.device, rec: Recorder, workers: int) -> None:
    """``Trainer.fit`` of convvit's ImageClassifier (vit_c_4gf, bf16 autocast, channels-last, AdamW) fed by each
    image-folder pipeline, against the same fit fed one batch already on the device: images/s over
    ``--fit-seconds`` after ``--fit-warmup`` steps, with the GPU's utilisation over that window."""
    import lightning as L

    from convvit.training.module import ImageClassifier

    class StepTimer(L.Callback):
        def __init__(self):
            self.images, self.start, self.steps = 0, None, 0

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.steps += 1
            if self.steps == args.fit_warmup:
                _sync(device)
                self.start = time.perf_counter()
            elif self.start is not None:
                self.images += args.batch_size
                if time.perf_counter() - self.start >= args.fit_seconds:
                    _sync(device)
                    self.rate = self.images / (time.perf_counter() - self.start)
                    trainer.should_stop = True

    def fit(train_data, label: str, detail: str) -> float:
        model = ImageClassifier("vit_c_4gf", num_classes=16, img_size=args.img_size, in_chans=3, lr=1e-3,
                                channels_last=True)
        timer = StepTimer()
        trainer = L.Trainer(
            # bf16 autocast on the GPU; fp32 for a CPU smoke run (a CPU without bf16 units runs it many times slower)
            accelerator=device.type, devices=1, precision="bf16-mixed" if device.type == "cuda" else "32-true",
            max_epochs=-1, max_steps=10**9,
            limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[timer],
        )
        with _GpuUtilisation(device) as util:
            if isinstance(train_data, L.LightningDataModule):
                trainer.fit(model, datamodule=train_data)
            else:
                trainer.fit(model, train_dataloaders=train_data)
        rate = getattr(timer, "rate", float("nan"))
        rec.add("fit", f"vit_c_4gf {label}", rate, "img/s", detail)
        if util.mean is not None:
            rec.add("fit", f"vit_c_4gf {label} GPU utilisation", util.mean, "%", "nvidia-smi, every 0.5 s")
        return rate

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=g).to(device)
    y = torch.randint(0, 16, (args.batch_size,), generator=g).to(device)
    held = torch.utils.data.DataLoader([(x, y)] * 10**6, batch_size=None)  # the same device batch, no loader work
    ceiling = fit(held, "on one device batch", "the model's ceiling: no decoding, no augmentation")
    for pipeline in ("device", "cpu"):
        rate = fit(_image_data(root, pipeline, args, device, workers), f"on the folder, {pipeline} pipeline",
                   f"{workers} workers, AutoAugment 'original' + RandomResizedCrop + flip")
        rec.add("fit", f"{pipeline} pipeline / ceiling", rate / ceiling, "x", "goal: at least 0.9 (device)")


# -------------------------------------------------------------------------------------------------- inference
def time_inference(name: str, args: argparse.Namespace, device: torch.device, rec: Recorder) -> dict[str, float]:
    """``convvit predict``'s forward on ``device``: fp32, auto, and auto compiled, alternating rounds."""
    from convvit.inference.runner import InferenceModel

    torch.manual_seed(0)
    base = convvit.create_model(name, img_size=args.img_size, num_classes=args.num_classes).eval()
    images = torch.randn(args.infer_batch_size, 3, args.img_size, args.img_size)
    forwards: dict[str, Callable[[], object]] = {}
    for requested in ("32", "auto"):
        inference = InferenceModel(copy.deepcopy(base), device, requested)
        x = inference.inputs(images)
        forwards[f"{requested} ({inference.precision})"] = lambda m=inference.model, x=x: m(x)
    if args.compile:
        compiled = torch.compile(inference.model)
        forwards[f"auto ({inference.precision}) + compile"] = lambda: compiled(x)
    with torch.inference_mode():
        start = time.perf_counter()
        for forward in forwards.values():
            for _ in range(args.warmup):  # the first calls compile and autotune
                forward()
        _sync(device)
        rec.add("warmup", f"{name} inference", time.perf_counter() - start, "s", f"{args.warmup} batches per runtime")
        times: dict[str, list[float]] = {label: [] for label in forwards}
        for r in range(args.rounds):
            for label in (list(forwards) if r % 2 == 0 else list(reversed(forwards))):
                times[label].append(_time_steps(forwards[label], args.iters, device))
    ips = {label: args.infer_batch_size * args.iters / statistics.median(t) for label, t in times.items()}
    for label, value in ips.items():
        rec.add("infer", f"{name} {label}", value, "img/s",
                f"batch {args.infer_batch_size}, {args.img_size} px, channels-last, inference_mode; "
                f"x{value / ips[next(iter(ips))]:.2f} over fp32; auto: {inference.reason}")
    del forwards
    return ips


# ------------------------------------------------------------------------------------------------------ main
def print_summary(rows: list[dict]) -> None:
    """The pairs side by side, then utilisation and the loader: the table the README quotes."""
    value = {(r["section"], r["item"]): r["value"] for r in rows}
    print(f"\n{rows[0]['device']}")
    print(f"{'pair':12s} {'convvit img/s':>14s} {'peer img/s':>11s} {'ratio':>6s} "
          f"{'convvit GiB':>12s} {'peer GiB':>9s}  peer")
    for r in rows:
        if r["section"] == "train" and r["item"].endswith(" convvit"):
            pair = r["item"].rsplit(" ", 1)[0]
            peer_item = next(k[1] for k in value if k[0] == "train" and k[1].startswith(f"{pair} peer: "))
            ratio = value[("train", f"{pair} ratio convvit/peer")]
            mem = [value.get(("memory", item)) for item in (f"{pair} convvit", peer_item)]
            mem_text = " ".join(f"{m:>{w}.2f}" if m is not None else f"{'-':>{w}s}" for m, w in zip(mem, (12, 9)))
            print(f"{pair:12s} {r['value']:14.1f} {value[('train', peer_item)]:11.1f} {ratio:6.3f} {mem_text}  "
                  f"{peer_item.split(': ', 1)[1]}")
    infer = [r for r in rows if r["section"] == "infer"]
    if infer:
        print(f"\n{'inference':36s} {'img/s':>10s}  vs fp32")
        for r in infer:
            print(f"{r['item']:36s} {r['value']:10.1f}  {r['detail'].split('; ')[1]}")
    for r in rows:
        if r["section"] in ("mfu", "loader", "fit", "error", "skipped"):
            print(f"{r['section']:8s} {r['item']:40s} {r['value']!s:>10} {r['unit']:8s} {r['detail']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(DEFAULT_PAIRS), choices=sorted(PAIRS))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the median is reported")
    parser.add_argument("--iters", type=int, default=10, help="training steps per timing")
    parser.add_argument("--warmup", type=int, default=4, help="steps before timing (the first compile)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager on both sides")
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--loader-images", type=int, default=6144)
    parser.add_argument("--loader-image-size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    parser.add_argument("--loader-warmup", type=int, default=5, help="batches before the loaders are timed")
    parser.add_argument("--loader-seconds", type=float, default=30.0, help="seconds each loader is timed")
    parser.add_argument("--fit-warmup", type=int, default=20, help="training steps before the fits are timed")
    parser.add_argument("--fit-seconds", type=float, default=30.0, help="seconds each end-to-end fit is timed")
    parser.add_argument("--skip-fit", action="store_true", help="loaders only, no end-to-end fits")
    parser.add_argument("--loader-workers", type=int, default=None, help="default: one per CPU core")
    parser.add_argument("--skip-loader", action="store_true")
    parser.add_argument("--infer-models", nargs="+", default=list(INFER_MODELS))
    parser.add_argument("--infer-batch-size", type=int, default=256)
    parser.add_argument("--skip-infer", action="store_true")
    parser.add_argument("--infer-only", action="store_true", help="only the inference table (no loader, no pairs)")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="start no further pair after this many seconds (default 330: with a cold compile cache a "
                             "pair takes up to 170 s on an H200, so the check ends within 8 minutes)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, eager, on the CPU when there is no GPU: checks that the script runs")
    parser.add_argument("--csv", type=Path, default=None,
                        help=f"where the rows go; a real run must name it ({RECORDED} holds the recorded GPU "
                             f"figures); --smoke writes {SMOKE_CSV} unless told")
    args = parser.parse_args(argv)
    if args.csv is None and not args.smoke:
        parser.error(f"name the output: --csv {RECORDED.relative_to(ROOT)} replaces the recorded GPU figures, "
                     "--csv PATH writes anywhere else")
    if args.smoke:
        args.csv = args.csv or SMOKE_CSV
        if args.csv.resolve().is_relative_to(RECORDED.parent):
            parser.error(f"--smoke figures are not results: write them outside {RECORDED.parent.relative_to(ROOT)}/ "
                         f"(default {SMOKE_CSV})")
        args.batch_size, args.img_size, args.num_classes = 2, 64, 10
        args.rounds, args.iters, args.warmup, args.compile = 1, 1, 1, False
        args.matmul_size, args.loader_images, args.loader_image_size = 64, 24, (80, 60)
        args.loader_warmup, args.loader_seconds, args.loader_workers = 1, 0.0, args.loader_workers or 1
        args.fit_warmup, args.fit_seconds = 1, 0.0
        args.infer_batch_size, args.infer_models = 2, args.infer_models[:1]
    if args.infer_only:
        args.skip_loader, args.pairs, args.skip_infer = True, [], False
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        sys.exit("gpu_check: no CUDA GPU found; run it on a GPU machine, or add --smoke for a tiny run on the CPU")
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast (the optimizer) as users run them
    torch.backends.cudnn.allow_tf32 = True
    name, info = describe_machine(device)
    rec = Recorder(name)
    started = time.perf_counter()
    print(f"gpu_check on {name}: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    for key, value in info.items():
        rec.add("machine", key, value)

    ceilings: dict[str, tuple[float, str]] = {}
    measured = matmul_ceiling_tflops(device, args.matmul_size)
    rec.add("machine", f"bf16 matmul {args.matmul_size}^3", measured, "TFLOP/s", "median of 10, random data")
    ceilings["measured bf16 matmul"] = (measured, f"{args.matmul_size}^3 torch.matmul, this run")
    peak, entry = datasheet_peak(name) if device.type == "cuda" else (None, "")
    if peak:
        ceilings["datasheet dense bf16 peak"] = (peak, f"NVIDIA datasheet, {entry}")

    failures: list[str] = []

    def attempt(label: str, fn: Callable[[], float | dict | None]):
        """Run one section; a failure is recorded and the rest still runs (device time is rented)."""
        try:
            return fn()
        except Exception as err:
            failures.append(f"{label}: {type(err).__name__}: {err}")
            rec.add("error", label, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
            return None
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rec.write(args.csv)  # what is measured so far survives a kill at the time limit

    # The loader first and vit_c_4gf first among the pairs: the figures the goals need come before the budget ends.
    loader_ips = None if args.skip_loader else attempt("loader", lambda: loader_images_per_s(args, device, rec))
    for pair_name in sorted(args.pairs, key=lambda p: p != "vit_c_4gf"):
        if time.perf_counter() - started > args.budget_s:
            rec.add("skipped", pair_name, f"over the {args.budget_s:.0f} s budget")
            continue
        ips = attempt(pair_name, lambda pair_name=pair_name: time_pair(pair_name, args, device, rec))
        if pair_name == "vit_c_4gf" and ips:
            report_mfu(ips["convvit"], args, ceilings, rec)
            for pipeline, rate in (loader_ips or {}).items():
                rec.add("loader", f"{pipeline} pipeline / vit_c_4gf training", rate / ips["convvit"], "x",
                        "below 1.0: the loader is the bottleneck")
    for name in [] if args.skip_infer else args.infer_models:  # after the pairs: their budget is not spent on these
        attempt(f"infer {name}", lambda name=name: time_inference(name, args, device, rec))
    rec.add("machine", "check wall time", time.perf_counter() - started, "s")
    rec.write(args.csv)
    print_summary(rec.rows)
    print(f"wrote {args.csv}")
    if failures:
        print("failures:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    return rec.rows


if __name__ == "__main__":
    main()
