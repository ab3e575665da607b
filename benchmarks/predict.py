"""Images/s of ``convvit predict``'s inference path on this CPU: fp32, ``--precision auto``, and onnxruntime.

For each model (random weights, 1000 classes, 224 px) three runtimes are timed alternately in one process, several
rounds, median images/s (the range of the rounds beside it):

* ``fp32``: :class:`convvit.inference.runner.InferenceModel` with ``precision="32"``;
* ``auto``: the same with ``precision="auto"``, resolved by training's rule (bf16 on CPUs with bf16 units for
  models of at least 0.5 GMACs; fp32 elsewhere, where it is the fp32 path timed again);
* ``onnxruntime``: the model exported by ``convvit export --format onnx`` (:func:`convvit.inference.export.
  export_onnx`, checked against PyTorch) run by onnxruntime's CPU provider in fp32, as a deployment would.

Only the forward pass is timed: decoding and resizing the files is the same for every runtime. The CPU model, its
ISA flags, torch's and onnxruntime's thread counts and the load average go into every row.

    python benchmarks/predict.py                                    # the five models; benchmarks/results/predict_cpu.csv
    python benchmarks/predict.py --models vit_c_4gf --rounds 5 --csv /tmp/p.csv
    python benchmarks/predict.py --precisions 32 auto bf16          # also bf16 forced (slow without bf16 units)
    python benchmarks/predict.py --tune                              # batch size, channels-last, inference_mode
    python benchmarks/predict.py --smoke                             # tiny sizes, a temporary CSV (what tests run)

``--tune`` times the choices :mod:`convvit.inference.runner` fixes, one at a time from its settings, and writes
benchmarks/results/predict_tune.csv.
"""  # noqa: E501
from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import convvit
from convvit import fileio
from convvit.inference import runner
from convvit.inference.runner import InferenceModel
from convvit.models.complexity import count_complexity
from convvit.precision import cpu_bf16_flags, cpu_model_name

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_MODELS = ("vit_c_1gf", "vit_c_4gf", "deit_small", "convit_small", "cvt_13")
# The ISA flags that decide how fast a CPU runs fp32 and bf16 matrix products.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
ONNXRUNTIME = "onnxruntime"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((line for line in text.splitlines() if line.startswith("flags")), "flags :")
    present = set(line.split(":", 1)[1].split())
    return [f for f in ISA_FLAGS if f in present]


def machine() -> dict[str, str]:
    import onnxruntime

    return dict(cpu=cpu_model_name(), isa=" ".join(cpu_flags()) or "unknown", bf16_units=" ".join(cpu_bf16_flags())
                or "none", cores=str(os.cpu_count()), torch=torch.__version__,
                torch_threads=str(torch.get_num_threads()), onnxruntime=onnxruntime.__version__)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def build(name: str, img_size: int, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return convvit.create_model(name, img_size=img_size, num_classes=num_classes).eval()


def onnx_forward(model: torch.nn.Module, name: str, img_size: int, num_classes: int, folder: Path,
                 ) -> Callable[[torch.Tensor], object]:
    """``model`` exported as ``convvit export`` does (checked against PyTorch), in an onnxruntime CPU session."""
    import onnxruntime

    from convvit.inference.export import export_onnx

    info = dict(name=name, num_classes=num_classes, class_names=[str(i) for i in range(num_classes)], in_chans=3,
                img_size=(img_size, img_size), weights="raw")
    path = export_onnx(model, folder / f"{name}.onnx", info).path
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run(None, {"images": images.numpy()})


def time_rounds(forwards: dict[str, Callable[[], object]], rounds: int, iters: int) -> dict[str, list[float]]:
    """Seconds per ``iters`` calls of each forward, the forwards alternating (their order reversed every round)."""
    for forward in forwards.values():  # warm-up: oneDNN primitives, allocator, onnxruntime's arena
        forward()
    times: dict[str, list[float]] = {key: [] for key in forwards}
    for r in range(rounds):
        for key in (list(forwards) if r % 2 == 0 else list(reversed(forwards))):
            start = time.perf_counter()
            for _ in range(iters):
                forwards[key]()
            times[key].append(time.perf_counter() - start)
    return times


def images_per_s(seconds: list[float], batch: int, iters: int) -> tuple[float, float, float]:
    """Median, slowest and fastest round in images/s."""
    return batch * iters / statistics.median(seconds), batch * iters / max(seconds), batch * iters / min(seconds)


def measure(name: str, args: argparse.Namespace, meta: dict[str, str], folder: Path) -> list[dict]:
    """One model: every runtime of ``args.precisions`` (and onnxruntime) timed side by side."""
    model = build(name, args.img_size, args.num_classes)
    gmacs = count_complexity(model)["flops"] / 1e9
    batch = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=torch.Generator().manual_seed(1))
    forwards, precision, reason = {}, {}, {}
    for requested in args.precisions:
        inference = InferenceModel(copy.deepcopy(model), "cpu", requested, gmacs)
        forwards[requested] = lambda inference=inference: inference.logits(batch)
        precision[requested], reason[requested] = inference.precision, inference.reason
    if not args.no_onnx:
        run_onnx = onnx_forward(model, name, args.img_size, args.num_classes, folder)
        forwards[ONNXRUNTIME] = lambda: run_onnx(batch)
        precision[ONNXRUNTIME], reason[ONNXRUNTIME] = "32", "onnxruntime CPUExecutionProvider"
    load_before = load_average()
    times = time_rounds(forwards, args.rounds, args.iters)
    rows = []
    for key, seconds in times.items():
        median, low, high = images_per_s(seconds, args.batch_size, args.iters)
        rows.append(dict(model=name, gmacs=round(gmacs, 3), runtime=key if key == ONNXRUNTIME else f"torch {key}",
                         precision=precision[key], reason=reason[key], batch=args.batch_size, img_size=args.img_size,
                         img_s=round(median, 2), img_s_low=round(low, 2), img_s_high=round(high, 2),
                         rounds=args.rounds, iters=args.iters, load_before=load_before, load_after=load_average(),
                         **meta))
    return rows


def tune(args: argparse.Namespace, meta: dict[str, str]) -> list[dict]:
    """Each of the runner's fixed choices varied alone from its settings, fp32 (what this CPU's auto runs)."""
    settings = dict(batch=runner.DEFAULT_BATCH_SIZE, channels_last=runner.CHANNELS_LAST, grad_mode="inference_mode")
    variants = [dict(settings, batch=b) for b in args.tune_batches if b != settings["batch"]]
    variants += [dict(settings, channels_last=not settings["channels_last"]), dict(settings, grad_mode="no_grad"),
                 settings]
    rows = []
    for name in args.models:
        model = build(name, args.img_size, args.num_classes)
        forwards = {}
        for v in variants:
            fmt = torch.channels_last if v["channels_last"] else torch.contiguous_format
            variant_model = copy.deepcopy(model).to(memory_format=fmt)
            images = torch.randn(v["batch"], 3, args.img_size, args.img_size).contiguous(memory_format=fmt)
            mode = torch.inference_mode if v["grad_mode"] == "inference_mode" else torch.no_grad

            repeats = max(1, max(args.tune_batches) // v["batch"])  # about as many images in every timing

            def forward(m=variant_model, x=images, mode=mode, repeats=repeats):
                with mode():
                    for _ in range(repeats):
                        m(x)

            forwards[(v["batch"], v["channels_last"], v["grad_mode"])] = forward
        times = time_rounds(forwards, args.rounds, 1)
        load = load_average()
        for (batch, channels_last, grad_mode), seconds in times.items():
            median, low, high = images_per_s(seconds, batch * max(1, max(args.tune_batches) // batch), 1)
            rows.append(dict(model=name, batch=batch, channels_last=channels_last, grad_mode=grad_mode,
                             chosen=(batch, channels_last, grad_mode) == tuple(settings.values()),
                             img_s=round(median, 2), img_s_low=round(low, 2), img_s_high=round(high, 2),
                             rounds=args.rounds, img_size=args.img_size, load_after=load, **meta))
            print(f"  {name:12s} batch {batch:3d} channels_last {channels_last!s:5s} {grad_mode:14s} "
                  f"{median:8.1f} img/s ({low:.1f}-{high:.1f})", flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    """Models down, runtimes across: the table the README quotes."""
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    print(f"\n{'model':13s} {'GMACs':>6s} " + " ".join(f"{k + ' img/s':>22s}" for k in runtimes))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = {r["runtime"]: r for r in rows if r["model"] == name}
        cells = [f"{mine[k]['img_s']:8.1f} ({mine[k]['precision']:>4s}) "
                 f"x{mine[k]['img_s'] / mine[runtimes[0]]['img_s']:.2f}"
                 for k in runtimes]
        print(f"{name:13s} {mine[runtimes[0]]['gmacs']:6.2f} " + " ".join(f"{c:>22s}" for c in cells))
    print(f"(x: over {runtimes[0]}; auto: {next((r['reason'] for r in rows if r['runtime'] == 'torch auto'), '-')})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_MODELS)}")
    parser.add_argument("--precisions", nargs="+", default=["32", "auto"], choices=runner.PRECISIONS)
    parser.add_argument("--no-onnx", action="store_true", help="leave out onnxruntime")
    parser.add_argument("--batch-size", type=int, default=runner.DEFAULT_BATCH_SIZE)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    parser.add_argument("--iters", type=int, default=2, help="batches per runtime per round")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--tune", action="store_true",
                        help="time batch size, channels-last and inference_mode instead "
                             "(fp32, default model vit_c_1gf)")
    parser.add_argument("--tune-batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, written to a temporary CSV: checks the script runs")
    parser.add_argument("--csv", type=Path, default=None,
                        help="default: benchmarks/results/predict_cpu.csv (predict_tune.csv with --tune); with --smoke "
                             "a file in the temporary folder")
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = ["vit_c_nano_32px"] if args.smoke else ["vit_c_1gf"] if args.tune else list(DEFAULT_MODELS)
    if args.smoke:
        args.img_size, args.num_classes, args.batch_size, args.rounds, args.iters = 32, 10, 2, 1, 1
        args.tune_batches = [1, 2]
        args.csv = args.csv or Path(tempfile.gettempdir()) / f"convvit-predict-{'tune-' if args.tune else ''}smoke.csv"
        if RESULTS in args.csv.resolve().parents:
            parser.error(f"--smoke never writes into {RESULTS} (the recorded results); give --csv elsewhere")
    args.csv = args.csv or RESULTS / ("predict_tune.csv" if args.tune else "predict_cpu.csv")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = machine()
    print("predict benchmark on " + ", ".join(f"{k} {v}" for k, v in meta.items()) + f"; load {load_average()}",
          flush=True)
    if args.tune:
        rows = tune(args, meta)
    else:
        rows = []
        with tempfile.TemporaryDirectory(prefix="convvit-predict-bench-") as tmp:
            for name in args.models:
                start = time.perf_counter()
                model_rows = measure(name, args, meta, Path(tmp))
                rows += model_rows
                print(f"  {name}: " + ", ".join(f"{r['runtime']} {r['img_s']:.1f} img/s" for r in model_rows)
                      + f" ({time.perf_counter() - start:.0f} s with export and warm-up)", flush=True)
                fileio.write_csv(args.csv, list(rows[0]), rows)  # what is measured so far survives an interrupted run
        print_table(rows)
    fileio.write_csv(args.csv, list(rows[0]), rows)
    print(f"wrote {args.csv}")
    return rows


if __name__ == "__main__":
    main()
