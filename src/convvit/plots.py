"""Figures of sweeps and runs, each a PNG with the numbers behind it in a CSV of the same name beside it.

* :func:`plot_edf`: error distribution functions per model and optimizer -- the ViT_C paper's (x = a run's
  top-1 error minus the best of its model and optimizer, y = cumulative fraction of runs) and the absolute one
  of pycls / the RegNet papers (x = top-1 error). A diverged run counts as the error of chance.
* :func:`plot_lrwd`: error over the (lr, wd) plane per model and optimizer, log axes, the good value the ranges
  are centred on marked, with :func:`bootstrap_best` intervals of the best lr and wd.
* :func:`plot_curves`: validation error against epoch, one line per run.

Errors are the sweep's: top-1 % on each trial's validation split (see :mod:`convvit.sweep.results`).
"""
from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convvit.fileio import pyplot, save_figure, write_csv
from convvit.sweep.results import DONE, MANIFEST, RESULTS, chance_error, read_manifest, read_results
from convvit.sweep.space import SweepError

__all__ = [
    "METRICS", "load_sweep", "run_errors", "best_runs", "edf", "edf_rows", "bootstrap_best", "read_curve",
    "plot_edf", "plot_lrwd", "plot_curves",
]

METRICS = ("final", "best")  # the error of the trained model, or the lowest validation error during training
Group = tuple[str, str]  # (model, optimizer)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    return write_csv(path, columns, rows, float_format=".6g")


# ------------------------------------------------------------------------------------------------ sweep data
def load_sweep(folder: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The results.csv rows of a sweep folder that are results (finished or diverged), and its manifest."""
    folder = Path(folder)
    if not (folder / RESULTS).is_file():
        raise SweepError(f"{folder} has no {RESULTS}. Fix: give the --out folder of a `convvit sweep`")
    rows = [r for r in read_results(folder / RESULTS) if r["status"] in DONE]
    if not rows:
        raise SweepError(f"{folder / RESULTS} has no finished trials yet. Fix: run (or resume) the sweep first")
    return rows, read_manifest(folder) or {}


def run_errors(rows: Iterable[Mapping[str, Any]], metric: str = "final") -> dict[Group, list[dict[str, Any]]]:
    """Per (model, optimizer), in order of appearance: each run with its ``error`` -- ``final_error`` or
    ``best_error`` -- where a diverged run's is the error of chance."""
    if metric not in METRICS:
        raise SweepError(f"unknown metric {metric!r}. Fix: --metric {' or --metric '.join(METRICS)}")
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        error = chance_error(row.get("num_classes")) if row["diverged"] else row[f"{metric}_error"]
        if error is None:
            continue  # finished without a validation (e.g. --trainer.limit_val_batches 0): nothing to rank
        groups[(row["model"], row["optimizer"])].append({**row, "error": float(error)})
    return dict(groups)


def edf(errors: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted errors and the fraction of runs at or below each: the empirical distribution function."""
    e = np.sort(np.asarray(errors, dtype=float))
    return e, np.arange(1, len(e) + 1) / len(e)


def edf_rows(groups: Mapping[Group, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per run: its error, its error minus the best of its group (``delta``) and the EDF value there
    (the fraction of the group's runs whose error is at or below it)."""
    out = []
    for (model, opt), runs in groups.items():
        errors = np.array([r["error"] for r in runs])
        best = errors.min()
        for run in sorted(runs, key=lambda r: r["error"]):
            out.append({
                "model": model, "optimizer": opt, "trial": run["trial"], "n": len(runs),
                "error": run["error"], "delta": run["error"] - best,
                "fraction": float(np.mean(errors <= run["error"])), "diverged": str(bool(run["diverged"])).lower(),
            })
    return out


def _summary(runs: Sequence[Mapping[str, Any]]) -> str:
    errors = [r["error"] for r in runs]
    return f"n={len(errors)}, best {min(errors):.2f}%, median {float(np.median(errors)):.2f}%"


def bootstrap_best(
    runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("lr", "wd"), fraction: float = 0.25,
    reps: int = 2500, seed: int = 0, percentiles: Sequence[float] = (2.5, 50, 97.5),
) -> dict[str, list[float]]:
    """pycls's "good range" bootstrap: draw ``fraction`` of the runs with replacement, keep the best run's value
    of each key, ``reps`` times; the percentiles of those values (taken in log space: lr and wd are log-scaled)."""
    errors = np.array([r["error"] for r in runs])
    values = {k: np.log(np.array([r[k] for r in runs], dtype=float)) for k in keys}
    size = max(1, round(fraction * len(runs)))
    draws = np.random.default_rng(seed).integers(0, len(runs), size=(reps, size))
    best = draws[np.arange(reps), errors[draws].argmin(axis=1)]
    return {k: [float(np.exp(np.percentile(v[best], q))) for q in percentiles] for k, v in values.items()}


# ------------------------------------------------------------------------------------------------ figures
def _styles(groups: Iterable[Group]) -> dict[Group, dict[str, Any]]:
    """A colour per model and a line style per optimizer, so that pairs read at a glance."""
    groups = list(groups)
    models = list(dict.fromkeys(m for m, _ in groups))
    opts = list(dict.fromkeys(o for _, o in groups))
    colors = [f"C{i}" for i in range(10)]
    lines = ["-", "--", ":", "-."]
    return {(m, o): {"color": colors[models.index(m) % 10], "linestyle": lines[opts.index(o) % 4]} for m, o in groups}


def plot_edf(folder: str | Path, out: str | Path | None = None, metric: str = "final") -> tuple[Path, Path]:
    """``edf.png`` (left: the paper's EDF of error minus the best; right: the EDF of absolute error) and
    ``edf.csv``, one row per run."""
    rows, _ = load_sweep(folder)
    groups = run_errors(rows, metric)
    png = Path(out) if out else Path(folder) / "plots" / "edf.png"
    plt = pyplot()
    fig, (ax_rel, ax_abs) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = _styles(groups)
    for group, runs in groups.items():
        errors, fractions = edf([r["error"] for r in runs])
        label = f"{group[0]} {group[1]} ({_summary(runs)})"
        for ax, x in ((ax_rel, errors - errors[0]), (ax_abs, errors)):
            # a step at each run, from 0 at the best: the fraction of runs within x
            ax.step(np.r_[x[0], x], np.r_[0.0, fractions], where="post", label=label, **styles[group])
    which = "final" if metric == "final" else "best during training"
    ax_rel.set(xlabel=f"top-1 error minus the best run's (%, {which}, validation)",
               ylabel="cumulative fraction of runs", title="EDF of error relative to the best (Xiao et al.)",
               ylim=(0, 1.02))
    ax_abs.set(xlabel=f"top-1 error (%, {which}, validation)", ylabel="cumulative fraction of runs",
               title="EDF of error (pycls / RegNet)", ylim=(0, 1.02))
    for ax in (ax_rel, ax_abs):
        ax.grid(alpha=0.3)
    ax_rel.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{Path(folder).resolve().name}: diverged runs count as chance error", fontsize=9)
    save_figure(fig, png)
    csv_path = _write_csv(png.with_suffix(".csv"), edf_rows(groups),
                          ("model", "optimizer", "trial", "n", "error", "delta", "fraction", "diverged"))
    return png, csv_path


def plot_lrwd(folder: str | Path, out: str | Path | None = None, metric: str = "final", reps: int = 2500,
              seed: int = 0) -> tuple[Path, Path, Path, list[dict[str, Any]]]:
    """``lrwd.png`` (error over the lr-wd plane, one panel per model and optimizer), ``lrwd.csv`` (the runs) and
    ``lrwd_ranges.csv`` (bootstrap 2.5/50/97.5 percentiles of the best lr and wd, beside the good value)."""
    rows, manifest = load_sweep(folder)
    groups = run_errors(rows, metric)
    good = manifest.get("good", {})
    png = Path(out) if out else Path(folder) / "plots" / "lrwd.png"
    models = list(dict.fromkeys(m for m, _ in groups))
    opts = list(dict.fromkeys(o for _, o in groups))
    plt = pyplot()
    fig, axes = plt.subplots(len(opts), len(models), figsize=(4.6 * len(models), 3.9 * len(opts)), squeeze=False)
    ranges: list[dict[str, Any]] = []
    for (model, opt), runs in groups.items():
        ax = axes[opts.index(opt)][models.index(model)]
        ok = [r for r in runs if not r["diverged"]]
        bad = [r for r in runs if r["diverged"]]
        shared = [r["error"] for m in models for r in groups.get((m, opt), []) if not r["diverged"]]
        if ok:  # one colour scale per optimizer row: the models' panels compare directly
            points = ax.scatter([r["lr"] for r in ok], [r["wd"] for r in ok], c=[r["error"] for r in ok],
                                cmap="viridis_r", vmin=min(shared), vmax=max(shared), s=36, edgecolors="none")
            fig.colorbar(points, ax=ax, label="top-1 error (%)")
        if bad:
            ax.scatter([r["lr"] for r in bad], [r["wd"] for r in bad], marker="x", color="red", label="diverged")
        best = min(runs, key=lambda r: r["error"])
        ax.scatter([best["lr"]], [best["wd"]], s=160, facecolors="none", edgecolors="black",
                   label=f"best {best['error']:.2f}%")
        interval = bootstrap_best(runs, reps=reps, seed=seed)
        (lr_lo, lr_mid, lr_hi), (wd_lo, wd_mid, wd_hi) = interval["lr"], interval["wd"]
        ax.errorbar([lr_mid], [wd_mid], xerr=[[lr_mid - lr_lo], [lr_hi - lr_mid]],
                    yerr=[[wd_mid - wd_lo], [wd_hi - wd_mid]], color="grey", capsize=3,
                    label="best lr, wd: 95% bootstrap")
        g = good.get(opt, {})
        if g:
            ax.scatter([g["lr"]], [g["wd"]], marker="*", s=180, color="black", label="good value (range centre)")
        ax.set(xscale="log", yscale="log", xlabel="lr", ylabel="weight decay",
               title=f"{model} {opt} ({_summary(runs)})")
        sampled = manifest.get("ranges", {}).get(opt, {})
        if sampled:  # the whole sampled plane, so that empty regions show as empty
            ax.set_xlim(sampled["lr"]["low"] / 1.25, sampled["lr"]["high"] * 1.25)
            ax.set_ylim(sampled["wd"]["low"] / 1.25, sampled["wd"]["high"] * 1.25)
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6, loc="best")
        for key in ("lr", "wd"):
            ranges.append({
                "model": model, "optimizer": opt, "param": key, "n": len(runs), "p2.5": interval[key][0],
                "p50": interval[key][1], "p97.5": interval[key][2], "best_run": best[key], "good": g.get(key, ""),
            })
    for i, j in np.ndindex(axes.shape):
        if (models[j], opts[i]) not in groups:
            axes[i][j].set_visible(False)
    fig.tight_layout()
    save_figure(fig, png)
    runs_csv = _write_csv(png.with_suffix(".csv"), [r for runs in groups.values() for r in runs],
                          ("model", "optimizer", "trial", "lr", "wd", "error", "diverged", "run_dir"))
    ranges_csv = _write_csv(png.with_name(f"{png.stem}_ranges.csv"), ranges,
                            ("model", "optimizer", "param", "n", "p2.5", "p50", "p97.5", "best_run", "good"))
    return png, runs_csv, ranges_csv, ranges


def read_curve(run_dir: str | Path) -> list[tuple[int, float]]:
    """(epoch, validation top-1 error %) of a ``convvit fit`` run directory, from its metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise SweepError(f"{run_dir} has no metrics.csv. Fix: give run directories written by `convvit fit` "
                         "(runs/NAME/version_N) or a sweep folder")
    points: dict[int, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/acc1"):
                points[int(row["epoch"]) + 1] = 100.0 * (1.0 - float(row["val/acc1"]))  # the last of an epoch wins
    return sorted(points.items())


def _label(run_dir: Path) -> str:
    """``NAME/version_N`` (a sweep's trial runs are ``TRIAL/version_N``)."""
    return f"{run_dir.parent.name}/{run_dir.name}"


def best_runs(rows: Iterable[Mapping[str, Any]], metric: str = "final") -> dict[Group, dict[str, Any]]:
    """Per (model, optimizer), the trained run (not diverged) with the lowest error, as :func:`run_errors` gives
    it; groups whose runs all diverged have none (they left no weights to evaluate)."""
    best = {}
    for group, runs in run_errors(rows, metric).items():
        trained = [r for r in runs if not r["diverged"]]
        if trained:
            best[group] = min(trained, key=lambda r: r["error"])
    return best


def sweep_best_runs(folder: str | Path, metric: str = "final") -> list[tuple[Path, str]]:
    """The best run of each model and optimizer of a sweep, labelled (groups whose runs all diverged have none)."""
    rows, _ = load_sweep(folder)
    return [
        (Path(folder) / best["run_dir"], f"{model} {opt} (best: lr {best['lr']:.3g}, wd {best['wd']:.3g})")
        for (model, opt), best in best_runs(rows, metric).items()
    ]


def plot_curves(runs: Sequence[str | Path | tuple[Path, str]], out: str | Path) -> tuple[Path, Path]:
    """``out`` (PNG): validation top-1 error against epoch, one labelled line per run; and the CSV beside it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    table = []
    for item in runs:
        run_dir, label = item if isinstance(item, tuple) else (Path(item), _label(Path(item).resolve()))
        points = read_curve(run_dir)
        if not points:
            raise SweepError(f"{run_dir} has no validation results in metrics.csv. Fix: runs must validate "
                             "(--trainer.check_val_every_n_epoch 1)")
        epochs, errors = zip(*points)
        ax.plot(epochs, errors, marker="o", markersize=3, label=label)
        table += [{"run": str(run_dir), "label": label, "epoch": e, "val_error": err} for e, err in points]
    ax.set(xlabel="epoch", ylabel="validation top-1 error (%)", title="validation error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    png = save_figure(fig, out)
    return png, _write_csv(png.with_suffix(".csv"), table, ("run", "label", "epoch", "val_error"))


def is_sweep(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file() or (Path(folder) / RESULTS).is_file()
