"""Does a convolutional teacher give ViT_P what a convolutional stem gives ViT_C? DeiT distillation on
Fashion-MNIST, as one resumable script that writes docs/results/distillation.md, its CSV and its figure.

    python benchmarks/distillation_report.py                    # the whole experiment (about 2.5 h on 2 cores)
    python benchmarks/distillation_report.py --limit-batches 2 --work /tmp/d --docs /tmp/d/docs   # a smoke run

Protocol (the main job's, configs/fashion_mnist/vit_c.yaml): 54,000 training images, every choice made on the
6,000-image hold-out (data.val_fraction 0.1, validated after every epoch), the test split used once per run on
its final weights. Stages:

1. teachers    trained once each with the main job's recipe and budget: a convnet from timm (``--convnet``,
               resnet10t) and ViT_C nano; each tested once. Their accuracy and wall time go in the report.
2. students    ViT_P nano and ViT_C nano, with DeiT's distillation token and head (the same architecture in
               every condition), at the main job's budget: no teacher, hard and soft distillation from the
               convnet, hard distillation from ViT_C nano; ``--seeds`` each.
3. tests       each student's final weights on the test split, once.
4. report      docs/results/distillation.md + distillation.csv + distillation.png.

Runs that finished are read back, never trained again: stop it at any point and run the same command to
continue. Work (runs, checkpoints, logs) stays in --work; only the report, its CSV and figure go to --docs.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import math
import statistics
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_report import (  # noqa: E402  (the Fashion-MNIST report's job runner, test reader, machine)
    ConvvitTest,
    ReportError,
    machine,
    split_sizes,
    table,
    train_runs,
    write_csv,
)

from convvit.sweep.core import SWEEP_DEFAULTS, SweepSpec, load_base_config, trial_job  # noqa: E402
from convvit.sweep.engines import threads_per_trial  # noqa: E402
from convvit.sweep.space import Trial  # noqa: E402
from convvit.sweep.trial import TrialJob  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/distillation_report.py"
CONFIG = ROOT / "configs/fashion_mnist/vit_c.yaml"
STUDENTS = ("vit_p_nano_32px", "vit_c_nano_32px")
LABELS = {"vit_p_nano_32px": "ViT_P", "vit_c_nano_32px": "ViT_C"}
# (condition, distillation type, teacher role): the question is the convnet's; ViT_C as teacher tells a
# convolutional teacher from any good teacher
CONDITIONS = (("none", "none", None), ("hard-convnet", "hard", "convnet"), ("soft-convnet", "soft", "convnet"),
              ("hard-vit_c", "hard", "vit_c"))
TEST_IMAGES = 10_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "runs/distillation_report")
    p.add_argument("--docs", type=Path, default=ROOT / "docs/results")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=None, help="default: the main job's (its config's max_epochs)")
    p.add_argument("--convnet", default="resnet10t", help="the timm convnet teacher")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (the cores are divided between them)")
    p.add_argument("--limit-batches", type=int, default=None, help="smoke runs: batches per epoch and split")
    return p


def _limits(limit: int | None, splits: Sequence[str]) -> list[str]:
    return [] if limit is None else [t for s in splits for t in (f"--trainer.limit_{s}_batches", str(limit))]


def fit_job(args: argparse.Namespace, trial: str, model: str, seed: int, extra: Sequence[str]) -> TrialJob:
    """`convvit fit` of the main job's config with ``model`` as a sweep trial at the config's optimizer, lr and wd
    (validation every epoch, no test after fit, the trial record the job runner reads back), as a job of
    WORK/runs/TRIAL. The hold-out is pinned: the protocol and the report name its 6,000 images."""
    base, _ = load_base_config(str(CONFIG))
    overrides = ["--data.val_fraction", SWEEP_DEFAULTS["data.val_fraction"],
                 *(["--trainer.max_epochs", str(args.epochs)] if args.epochs else []),
                 *_limits(args.limit_batches, ("train", "val")), *extra]
    spec = SweepSpec(config=str(CONFIG), models=[model], optimizers=[], samples=1, out=str(args.work),
                     parallel=args.parallel, overrides=overrides)
    run = Trial(trial, model, base["model"]["optimizer"], 0, None, None, seed)  # lr and wd: the config's
    job = trial_job(spec, base, run, args.work, threads_per_trial(args.parallel))
    job.cwd = str(ROOT)  # the config's relative paths (a dataset's ./data) are the repository's, wherever it runs
    return job


def teacher_jobs(args: argparse.Namespace) -> dict[str, TrialJob]:
    return {"convnet": fit_job(args, f"teacher-{args.convnet}", args.convnet, 0, []),
            "vit_c": fit_job(args, "teacher-vit_c_nano_32px", "vit_c_nano_32px", 0, [])}


def student_jobs(args: argparse.Namespace, teachers: Mapping[str, Path]) -> list[TrialJob]:
    jobs = []
    for model in STUDENTS:
        for condition, kind, role in CONDITIONS:
            for seed in args.seeds:
                extra = ["--model.model_kwargs", "{distilled: true}", "--model.distillation.type", kind]
                if role is not None:
                    extra += ["--model.distillation.teacher", str(teachers[role])]
                job = fit_job(args, f"{LABELS[model]}-{condition}-seed{seed}", model, seed, extra)
                job.trial.update(condition=condition, teacher=role or "")
                jobs.append(job)
    return jobs


def checkpoint_of(args: argparse.Namespace, row: Mapping[str, Any]) -> Path:
    return args.work / row["run_dir"] / "checkpoints" / "last.ckpt"


@functools.cache  # a model is built to count it; the report asks for the same few models once per run
def forward_flops(model: str, distilled: bool = False) -> int:
    """Multiply-adds of one Fashion-MNIST image through ``model`` (convvit's flops convention, the papers')."""
    from convvit.data.registry import get_dataset
    from convvit.models.complexity import count_complexity

    data = get_dataset("fashion_mnist")
    kwargs = {"distilled": True} if distilled else {}
    return count_complexity(model, img_size=data.img_size, in_chans=data.in_chans, **kwargs)["flops"]


def training_compute(args: argparse.Namespace, images_per_epoch: int, model: str, distilled: bool,
                     teacher: str | None) -> float:
    """Multiply-adds of a run's training, in units of 1e12: 3x the model's forward pass per training image (the
    forward and the two products of the backward) plus the frozen teacher's forward pass, over every epoch.
    Unlike wall time, it does not depend on what else the machine was running."""
    base, _ = load_base_config(str(CONFIG))
    epochs = args.epochs or base["trainer"]["max_epochs"]
    per_image = 3 * forward_flops(model, distilled) + (forward_flops(teacher) if teacher else 0)
    return per_image * images_per_epoch * epochs / 1e12


def images_per_epoch(args: argparse.Namespace) -> int:
    """Training images one epoch sees: the split after the hold-out, or --limit-batches batches."""
    if args.limit_batches is None:
        return split_sizes(float(SWEEP_DEFAULTS["data.val_fraction"]))["train"]
    base, _ = load_base_config(str(CONFIG))
    return args.limit_batches * int(base["data"]["batch_size"])


def one_run_ci95(error: float) -> float:
    """Half-width of the 95% interval of a test error (in points) measured once on the 10,000 test images: the
    binomial's normal approximation. It is the smallest difference a single run can resolve."""
    p = error / 100
    return 196 * math.sqrt(p * (1 - p) / TEST_IMAGES)


def cells(rows: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str, list[Mapping[str, Any]]]]:
    """The runs of each (student, condition) that has any, in the report's order."""
    for model in STUDENTS:
        for condition, _, _ in CONDITIONS:
            if runs := [r for r in rows if r["model"] == model and r["condition"] == condition]:
                yield model, condition, runs


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per student and condition: the seeds' test errors, their mean and spread, and the 95% interval of one
    run's test error from the test split's size alone (the smallest difference one run can resolve)."""
    out = []
    for model, condition, runs in cells(rows):
        errors = [float(r["test_error"]) for r in runs]
        mean = statistics.fmean(errors)
        half = one_run_ci95(mean)
        out.append({"student": LABELS[model], "condition": condition, "runs": len(errors),
                    "test_errors": " ".join(f"{e:.2f}" for e in errors), "mean_test_error": mean,
                    "seed_spread": max(errors) - min(errors), "one_run_ci95": half,
                    "compute": next((float(r["compute"]) for r in runs if "compute" in r), math.nan),
                    "mean_seconds": statistics.fmean(float(r["seconds"]) for r in runs)})
    return out


# Student's t, 97.5th percentile, by degrees of freedom (scipy.stats.t.ppf(0.975, df); scipy is not a dependency)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_975(df: int) -> float:
    return T_975[df - 1] if df <= len(T_975) else 1.96


def pooled_seed_sd(rows: Sequence[Mapping[str, Any]]) -> tuple[float, int] | None:
    """Run-to-run standard deviation of the test error (points), pooled over every (student, condition) with two or
    more seeds, and its degrees of freedom; None with one seed each. All runs are tested on the same 10,000 images,
    so it measures how much training alone moves a test error: the noise a difference between conditions faces."""
    squares, df = 0.0, 0
    for _, _, runs in cells(rows):
        errors = [float(r["test_error"]) for r in runs]
        mean = statistics.fmean(errors)
        squares += sum((e - mean) ** 2 for e in errors)  # a single run adds nothing, nor any freedom
        df += len(errors) - 1
    return (math.sqrt(squares / df), df) if df else None


def difference_ci95(a: Mapping[str, Any], b: Mapping[str, Any], pooled: tuple[float, int] | None) -> float:
    """Half-width of the 95% interval of ``a``'s mean test error minus ``b``'s: from the pooled seed-to-seed
    deviation when there is one (t with its degrees of freedom), else from each single run's binomial interval."""
    if pooled is None:
        return math.hypot(a["one_run_ci95"], b["one_run_ci95"])
    sd, df = pooled
    return t_975(df) * sd * math.sqrt(1 / a["runs"] + 1 / b["runs"])


def verdicts(summary: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The two questions, read off the means, each difference with its 95% interval."""
    cell = {(r["student"], r["condition"]): r for r in summary}
    pooled = pooled_seed_sd(rows)

    def change(student: str, condition: str, against: str = "none") -> tuple[float, str] | None:
        if (student, condition) not in cell or (student, against) not in cell:
            return None
        a, b = cell[(student, condition)], cell[(student, against)]
        diff, half = a["mean_test_error"] - b["mean_test_error"], difference_ci95(a, b, pooled)
        verdict = "beyond the noise" if abs(diff) > half else "within the noise"
        return diff, f"{diff:+.2f} ± {half:.2f} points, {verdict}"

    lines = []
    if ("ViT_P", "none") in cell and ("ViT_C", "none") in cell:
        a, b = cell[("ViT_P", "none")], cell[("ViT_C", "none")]
        gap = a["mean_test_error"] - b["mean_test_error"]
        lines.append(f"Undistilled, ViT_P's test error is {gap:+.2f} ± {difference_ci95(a, b, pooled):.2f} points "
                     "from ViT_C's (the stem's effect at equal flops).")
        for condition, what in (("hard-convnet", ""), ("soft-convnet", ""),
                                ("hard-vit_c", " (a transformer teacher with a conv stem, not a convnet)")):
            if found := change("ViT_P", condition):
                closed = -found[0]
                share = f"; {100 * closed / gap:.0f}% of the gap" if gap > 0 else ""
                lines.append(f"{condition}{what} changes ViT_P's error by {found[1]}{share}.")
    for condition in ("hard-convnet", "soft-convnet", "hard-vit_c"):
        if found := change("ViT_C", condition):
            lines.append(f"{condition} changes ViT_C's error by {found[1]} (does it add to the stem?).")
    if pooled is None:
        lines.append("Intervals: one run per condition, so each difference's interval comes from the two runs' "
                     "binomial intervals on 10,000 test images (seed-to-seed noise is not measured).")
    else:
        lines.append(f"Intervals: 95%, from the seed-to-seed standard deviation of a run's test error pooled over "
                     f"all conditions ({pooled[0]:.2f} points, {pooled[1]} degrees of freedom) and Student's t.")
    return lines


def plot(summary: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], png: Path) -> Path:
    from convvit.fileio import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [c for c, _, _ in CONDITIONS]
    for k, student in enumerate(("ViT_P", "ViT_C")):
        xs = [i + (k - 0.5) * 0.3 for i in range(len(names))]
        means = [next((r["mean_test_error"] for r in summary if r["student"] == student and r["condition"] == c),
                      math.nan) for c in names]
        ax.bar(xs, means, width=0.3, label=student, alpha=0.8)
        for x, c in zip(xs, names):
            pts = [r["test_error"] for r in rows if LABELS[r["model"]] == student and r["condition"] == c]
            ax.plot([x] * len(pts), pts, "k.", ms=5)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test error (%)")
    ax.set_title("Fashion-MNIST, nano students (bars: mean, dots: seeds)")
    ax.legend()
    lows = [r["test_error"] for r in rows]
    if lows:
        ax.set_ylim(min(lows) - 1.0, max(lows) + 1.0)
    return save_figure(fig, png, dpi=120)


def write_report(args: argparse.Namespace, teachers: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
                 ) -> Path:
    images = images_per_epoch(args)
    roles = {"convnet": args.convnet, "vit_c": "vit_c_nano_32px"}
    for t in teachers:
        t["compute"] = training_compute(args, images, t["model"], False, None)
    for r in rows:
        r["compute"] = training_compute(args, images, r["model"], True, roles.get(r["teacher"]))
    summary = summarize(rows)
    train_h = sum(float(r["seconds"]) for r in [*teachers, *rows]) / 3600
    docs = args.docs
    csv_path = write_csv(docs / "distillation" / "distillation.csv", [
        {k: r[k] for k in ("trial", "model", "condition", "teacher", "seed", "final_error", "test_error", "compute",
                           "seconds")}
        for r in rows])
    png = plot(summary, rows, docs / "distillation" / "distillation.png")
    teacher_table = table(["teacher", "hold-out error (%)", "test error (%)", "forward MFLOPs / image",
                           "train compute (TFLOPs)", "train wall (s)"],
                          [[t["model"], f"{float(t['final_error']):.2f}",
                            f"{t['test_error']:.2f} ± {one_run_ci95(t['test_error']):.2f}",
                            f"{forward_flops(t['model']) / 1e6:.1f}", f"{t['compute']:.1f}",
                            f"{float(t['seconds']):.0f}"] for t in teachers])
    student_flops = {LABELS[m]: forward_flops(m, distilled=True) / 1e6 for m in STUDENTS}
    student_table = table(["student", "forward MFLOPs / image", "condition", "runs", "test errors (%)", "mean",
                           "seed spread", "one run ±95%", "train compute (TFLOPs)", "train wall (s, mean)"],
                          [[r["student"], f"{student_flops[r['student']]:.1f}", r["condition"], r["runs"],
                            r["test_errors"], f"{r['mean_test_error']:.2f}", f"{r['seed_spread']:.2f}",
                            f"{r['one_run_ci95']:.2f}", f"{r['compute']:.1f}", f"{r['mean_seconds']:.0f}"]
                           for r in summary])
    smoke = (f"\n**Smoke run** (--limit-batches {args.limit_batches}): the figures measure nothing.\n"
             if args.limit_batches else "")
    text = f"""# Distillation: a convolutional teacher for ViT_P and ViT_C

Generated by `python {SCRIPT}` on {datetime.date.today().isoformat()}: {len(teachers) + len(rows)} training
runs, {train_h:.2f} h of training wall time in all; machine: {_machine()}.{smoke}

Protocol: configs/fashion_mnist/vit_c.yaml (the main job), 54,000 training images, the 6,000-image hold-out for
validation, the test split once per run. Students carry DeiT's distillation token and head in every condition
(the `none` row trains both heads on the labels), so only the teacher differs. Distillation uses DeiT's defaults,
alpha 0.5 and tau 1.0: `hard` is cross-entropy of the distillation head against the teacher's top-1 class; `soft`
is DeiT's KL term, which divides its sum by batch x classes (not by the batch), so with 10 classes it weighs a
tenth of a per-image KL. The teacher sees each augmented training batch in eval mode.

Cost: train compute counts multiply-adds (the papers' flops), 3x the model's forward pass per training image plus
the frozen teacher's forward pass, over every epoch; it does not depend on the machine. Wall time does: it is what
each run took on the machine above, with whatever else it was running at the time.

## Teachers

{teacher_table}

## Students

{student_table}

![test error by condition]({png.relative_to(docs).as_posix()})

## Reading

{chr(10).join('* ' + line for line in verdicts(summary, rows))}

Data: [{csv_path.relative_to(docs).as_posix()}]({csv_path.relative_to(docs).as_posix()}).
"""
    from convvit.fileio import atomic_write_text

    return atomic_write_text(docs / "distillation.md", text)


def _machine() -> str:
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, CPU flags {m['flags']}, torch {m['torch']}"


def run(args: argparse.Namespace) -> Path:
    args.work.mkdir(parents=True, exist_ok=True)
    tester = ConvvitTest(args.work / "tests", args.limit_batches)
    print("\n== stage 1/4: teachers", flush=True)
    jobs = teacher_jobs(args)
    teacher_rows = dict(zip(jobs, train_runs(list(jobs.values()), args.work, args.parallel)))
    teachers = {role: checkpoint_of(args, row) for role, row in teacher_rows.items()}
    for row in teacher_rows.values():
        row["test_error"] = tester(args.work / row["run_dir"], row["trial"])
    print("\n== stage 2/4: students", flush=True)
    student = student_jobs(args, teachers)
    rows = train_runs(student, args.work, args.parallel)
    print("\n== stage 3/4: tests", flush=True)
    for job, row in zip(student, rows):
        row.update(condition=job.trial["condition"], teacher=job.trial["teacher"])
        row["test_error"] = tester(args.work / row["run_dir"], row["trial"])
    print("\n== stage 4/4: report", flush=True)
    path = write_report(args, list(teacher_rows.values()), rows)
    print(f"wrote {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from convvit.signals import interrupt_exit_code, terminate_as_interrupt

    try:
        with terminate_as_interrupt():  # the running trial stops (it saves last.ckpt); the rerun resumes it
            run(args)
        return 0
    except ReportError as err:
        print(f"{SCRIPT}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        print(f"{SCRIPT}: interrupted; run the same command again to resume", file=sys.stderr)
        return interrupt_exit_code(interrupt)


if __name__ == "__main__":
    sys.exit(main())
