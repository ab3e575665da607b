"""A stability sweep from start to results.csv: check the input, plan the trials, skip what is done, run the rest.

Layout of a sweep folder ``OUT``::

    OUT/sweep.json                 what was asked for (models, optimizers, ranges, seed, base config, options)
    OUT/results.csv                one row per trial (see convvit.sweep.results)
    OUT/runs/TRIAL/version_N/      each trial's ordinary `convvit fit` run directory (+ trial.json)
    OUT/logs/TRIAL.log             each trial's output
    OUT/ray/                       Ray Tune's own state (--engine ray)

Resuming is the same command again: trials whose row says finished or diverged are skipped, the others (never
run, interrupted, failed) run again from the start in a new ``version_N``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convvit.durations import format_duration
from convvit.sweep.engines import (
    ENGINES,
    JobRunner,
    Resources,
    check_ray,
    check_reachable,
    make_engine,
    threads_per_trial,
)
from convvit.sweep.results import DONE, MANIFEST, RESULTS, parse_results, read_manifest, write_manifest
from convvit.sweep.space import (
    PAPER_BATCH_SIZE,
    PAPER_GOOD,
    Range,
    SweepError,
    Trial,
    around,
    make_trials,
    parse_range,
)
from convvit.sweep.trial import RECORD_CALLBACK, TrialJob
from convvit.training.option_names import given_options, option_tokens

__all__ = [
    "SweepSpec", "Sweep", "run_sweep", "RESERVED_OPTIONS", "SWEEP_DEFAULTS", "load_base_config", "trial_argv",
    "trial_job",
]

# Options each trial gets from the sweep: giving them as overrides would break the sweep's bookkeeping.
RESERVED_OPTIONS = {
    "--model.name": "--models", "--model.optimizer": "--optimizers", "--model.lr": "--lr",
    "--model.weight_decay": "--wd", "--seed_everything": "--seed", "--trainer.default_root_dir": "--out",
    "--name": "--out", "--config": "--config", "--ckpt_path": "a fresh --out",
}
# What a trial runs with unless the base config or the command line says otherwise: rank trials on a split
# held out from training (never on the test split), validate every epoch (the curves), and do not test.
SWEEP_DEFAULTS = {"data.val_fraction": "0.1", "trainer.check_val_every_n_epoch": "1", "test_after_fit": "false"}
_STATE = "state"  # manifest keys that may change between runs of the same sweep
_IDENTITY = ("models", "optimizers", "seed", "ranges", "config_sha256", "overrides")


@dataclass
class SweepSpec:
    """The arguments of ``convvit sweep`` (see ``convvit sweep --help``)."""

    config: str
    models: list[str]
    optimizers: list[str]
    samples: int
    out: str
    lr: list[str] = field(default_factory=list)  # "LOW,HIGH" or "OPTIMIZER=LOW,HIGH"
    wd: list[str] = field(default_factory=list)
    seed: int = 0
    parallel: int = 1
    engine: str = "local"
    address: str | None = None
    cpus_per_trial: int | None = None
    gpus_per_trial: float = 0.0
    overrides: list[str] = field(default_factory=list)  # further `convvit fit` options
    check_config: bool = True


# ---------------------------------------------------------------------------------------------------- checks
def check_overrides(overrides: Sequence[str]) -> None:
    """Further options are ``--key value`` or ``--key=value`` pairs for ``convvit fit``, none the sweep sets."""
    for option, value in option_tokens(overrides):
        if option in RESERVED_OPTIONS:
            raise SweepError(f"{option} is set by the sweep for each trial. Fix: use {RESERVED_OPTIONS[option]}")
        if not option:
            raise SweepError(f"unexpected argument {value!r}. Fix: options for the trials go as --key value "
                             "(e.g. --trainer.max_epochs 2)")


def _setting(spec: SweepSpec, base: dict, key: str, default: Any = None) -> Any:
    """A trial's value of ``key``: the command line's, else the base config's, else ``default``."""
    given = given_options(spec.overrides, base, spec.config).get(key)
    return default if given is None or given.value is None else given.value


def check_validates(spec: SweepSpec, base: dict) -> None:
    """Trials that never validate leave nothing to compare: refuse them before anything trains."""
    try:
        every = int(_setting(spec, base, "trainer.check_val_every_n_epoch",
                             SWEEP_DEFAULTS["trainer.check_val_every_n_epoch"]))
        epochs = int(_setting(spec, base, "trainer.max_epochs", 10))  # 10: convvit fit's default
    except (TypeError, ValueError):
        return  # not plain numbers: `convvit fit` itself will say what is wrong
    if 0 < epochs < every:
        raise SweepError(f"trials train {epochs} epoch(s) but validate every {every}, so they would record no error. "
                         f"Fix: add --trainer.check_val_every_n_epoch 1 (or --trainer.max_epochs {every})")


def load_base_config(path: str) -> tuple[dict, str]:
    """The base config as a dict, and the sha256 of its text (a sweep is tied to one version of its file)."""
    file = Path(path)
    if not file.is_file():
        raise SweepError(f"base config {path} does not exist. Fix: --config PATH/TO/BASE.yaml, e.g. "
                         "configs/fashion_mnist/vit_c.yaml")
    text = file.read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SweepError(f"base config {path} is not valid YAML ({first}). Fix: check that `convvit fit --config "
                         f"{path} --print_config` loads it") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise SweepError(f"base config {path} is not a mapping of options. Fix: a `convvit fit` config, e.g. "
                         "configs/fashion_mnist/vit_c.yaml")
    return config, hashlib.sha256(text.encode()).hexdigest()


def _model_defaults() -> dict[str, Any]:
    from convvit.training.module import ImageClassifier

    return {k: p.default for k, p in inspect.signature(ImageClassifier.__init__).parameters.items()}


def resolve_ranges(spec: SweepSpec, base: dict) -> dict[str, dict[str, Range]]:
    """(lr, wd) ranges per optimizer: ``--lr``/``--wd`` where given (for all optimizers, or ``OPT=LOW,HIGH``),
    else 1/8x..4x the good value: the base config's for its own optimizer, the paper's for the others (its lr
    scaled linearly from batch 2048 to the trials' batch)."""
    given: dict[str, dict[str, Range]] = {opt: {} for opt in spec.optimizers}
    for key, texts in (("lr", spec.lr), ("wd", spec.wd)):
        for text in texts:
            opt, _, rng = text.rpartition("=")
            targets = [opt] if opt else spec.optimizers
            if opt and opt not in spec.optimizers:
                raise SweepError(f"--{key} {text}: {opt!r} is not one of --optimizers {','.join(spec.optimizers)}. "
                                 f"Fix: --{key} {spec.optimizers[0]}={rng}, or add {opt} to --optimizers")
            for target in targets:
                given[target][key] = parse_range(rng, f"--{key}")
    defaults = _model_defaults()

    def setting(key: str) -> Any:
        return _setting(spec, base, f"model.{key}", defaults.get(key))

    base_opt = str(setting("optimizer")).lower()
    base_batch = setting("lr_base_batch_size") or _setting(spec, base, "data.batch_size", 128)
    ranges: dict[str, dict[str, Range]] = {}
    for opt in spec.optimizers:
        if opt == base_opt:
            good = {"lr": (float(setting("lr")), f"{Path(spec.config).name}"),
                    "wd": (float(setting("weight_decay")), f"{Path(spec.config).name}")}
        else:
            lr, wd = PAPER_GOOD[opt]
            scale = float(base_batch) / PAPER_BATCH_SIZE
            good = {"lr": (float(f"{lr * scale:.3g}"), f"paper {lr:g} at batch {PAPER_BATCH_SIZE}, x{scale:g}"),
                    "wd": (wd, "paper")}
        ranges[opt] = {key: given[opt].get(key) or around(*good[key]) for key in ("lr", "wd")}
    return ranges


def check_spec(spec: SweepSpec) -> None:
    """Everything that can be checked without training: each problem is a :class:`SweepError` naming the fix."""
    import convvit
    from convvit.training.optim import OPTIMIZERS

    if spec.samples < 1:
        raise SweepError(f"--samples {spec.samples}: a sweep needs at least one sample per model and optimizer. "
                         "Fix: --samples 16 (the paper used 64)")
    if not spec.models:
        raise SweepError("--models is empty. Fix: e.g. --models vit_c_nano_32px,vit_p_nano_32px")
    for model in spec.models:
        if not convvit.is_model(model):
            import difflib

            close = difflib.get_close_matches(model, convvit.list_models(), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise SweepError(f"unknown model {model!r}. Fix: {hint}`convvit models` lists them")
    for opt in spec.optimizers:
        if opt not in OPTIMIZERS:
            raise SweepError(f"unknown optimizer {opt!r}. Fix: --optimizers takes {', '.join(OPTIMIZERS)}")
    for name, values in (("--models", spec.models), ("--optimizers", spec.optimizers)):
        if len(set(values)) != len(values):
            raise SweepError(f"{name} lists a name twice ({','.join(values)}). Fix: name each once")
    if spec.engine not in ENGINES:
        raise SweepError(f"unknown engine {spec.engine!r}. Fix: --engine local or --engine ray")
    if spec.parallel < 1:
        raise SweepError(f"--parallel {spec.parallel}: at least one trial must run at a time. Fix: --parallel 1")
    if spec.cpus_per_trial is not None and spec.cpus_per_trial < 1:
        raise SweepError(f"--cpus-per-trial {spec.cpus_per_trial}: a trial needs a CPU. Fix: --cpus-per-trial 1")
    if spec.gpus_per_trial < 0:
        raise SweepError(f"--gpus-per-trial {spec.gpus_per_trial} is negative. Fix: --gpus-per-trial 0 or more")
    if spec.engine == "ray":
        check_ray()
        if spec.address:
            check_reachable(spec.address)
    elif spec.address:
        raise SweepError(f"--address {spec.address} joins a Ray cluster, which only --engine ray does. "
                         "Fix: add --engine ray, or drop --address")
    check_overrides(spec.overrides)


def trial_argv(spec: SweepSpec, base: dict, trial: Trial, root: Path) -> list[str]:
    """``fit --config BASE [sweep defaults] [overrides] --model.name ... --name TRIAL ...`` for one trial of
    ``spec`` (``base``: its config, :func:`load_base_config`), its run folder under ROOT/runs. A trial's
    optimizer, lr or wd that is None is left to the base config."""
    defaults: list[str] = []
    for key, value in SWEEP_DEFAULTS.items():
        if _setting(spec, base, key) is None:
            defaults += [f"--{key}", value]
    settings = (("--model.optimizer", trial.optimizer), ("--model.lr", trial.lr), ("--model.weight_decay", trial.wd))
    return [
        "fit", "--config", str(Path(spec.config).resolve()), *defaults, *spec.overrides, "--model.name", trial.model,
        *(token for option, value in settings if value is not None
          for token in (option, value if isinstance(value, str) else repr(value))),
        "--seed_everything", str(trial.seed),
        "--trainer.default_root_dir", str(root / "runs"), "--name", trial.trial,
        RECORD_CALLBACK,
    ]


def trial_job(spec: SweepSpec, base: dict, trial: Trial, root: Path, threads: int) -> TrialJob:
    """:func:`trial_argv` as a job for an engine or :class:`~convvit.sweep.engines.JobRunner`: its run folders
    ROOT/runs/TRIAL/version_N, its log ROOT/logs/TRIAL.log, ``threads`` CPU threads."""
    return TrialJob(
        trial=trial.to_dict(), argv=trial_argv(spec, base, trial, root), root=str(root),
        run_parent=str(root / "runs" / trial.trial), log=str(root / "logs" / f"{trial.trial}.log"),
        threads=threads, cwd=os.getcwd(),
    )


def check_fit_options(argv: Sequence[str]) -> None:
    """The base config and options load as ``convvit fit`` options (parsed only: nothing is built or trained)."""
    from convvit.cli.train import parse_error
    from convvit.training.lightning_cli import parse_options

    try:
        parse_options(argv)
    except argparse.ArgumentError as err:
        raise SweepError(f"the base config and options do not load as `convvit fit` options: {parse_error(err)}. "
                         f"Fix: correct them until `convvit {' '.join(argv[:3])} ... --print_config` runs") from None


# ---------------------------------------------------------------------------------------------------- the sweep
def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}%"


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """One sweep process per folder: two would run the same trials and overwrite each other's results.csv."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SweepError(f"another `convvit sweep` is running in {folder}. Fix: wait for it, or choose "
                             "another --out") from None
        yield


class Sweep:
    """A checked, planned sweep: :meth:`run` runs what is left and keeps results.csv up to date."""

    def __init__(self, spec: SweepSpec, command: str = "") -> None:
        check_spec(spec)
        self.spec = spec
        self.root = Path(spec.out).resolve()
        self.base, digest = load_base_config(spec.config)
        check_validates(spec, self.base)
        self.ranges = resolve_ranges(spec, self.base)
        self.trials = make_trials(spec.models, spec.optimizers, spec.samples, self.ranges, spec.seed)
        self.manifest = {
            "models": list(spec.models), "optimizers": list(spec.optimizers), "seed": spec.seed,
            "ranges": {opt: {k: {"low": r.low, "high": r.high} for k, r in rs.items()}
                       for opt, rs in self.ranges.items()},
            "good": {opt: {k: r.good for k, r in rs.items()} for opt, rs in self.ranges.items()},
            "config": str(Path(spec.config).resolve()), "config_sha256": digest, "overrides": list(spec.overrides),
            "samples": spec.samples, "command": command, "cwd": os.getcwd(),
            "metric_split": "validation (see the val_split column)",
        }
        self._check_folder()
        self.resources = Resources(
            parallel=spec.parallel,
            cpus_per_trial=threads_per_trial(spec.parallel, spec.cpus_per_trial),
            gpus_per_trial=spec.gpus_per_trial,
        )
        if spec.check_config:
            check_fit_options(trial_argv(spec, self.base, self.trials[0], self.root)[:-1])  # without the callback

    def _check_folder(self) -> None:
        """An --out that holds another sweep is refused: its results would be mixed with this one's."""
        if self.root.exists() and not self.root.is_dir():
            raise SweepError(f"--out {self.spec.out} is a file. Fix: give a folder (it is created if needed)")
        old = read_manifest(self.root) if self.root.is_dir() else None
        if old is None:
            if (self.root / RESULTS).is_file():
                raise SweepError(f"{self.root} holds a {RESULTS} but no {MANIFEST}, so it cannot be checked to be "
                                 "this sweep. Fix: choose another --out")
            return
        changed = [key for key in _IDENTITY if old.get(key) != self.manifest[key]]
        if changed:
            details = "; ".join(f"{key}: {_short(old.get(key))} there, {_short(self.manifest[key])} here"
                                for key in changed)
            hint = f" (it was started with: {old['command']})" if old.get("command") else ""
            raise SweepError(f"--out {self.spec.out} holds a different sweep's results ({details}). Fix: choose "
                             f"another --out, or run the command that started it{hint}")

    # -------------------------------------------------------------------------------------------- running
    def jobs(self) -> list[TrialJob]:
        return [trial_job(self.spec, self.base, t, self.root, self.resources.cpus_per_trial) for t in self.trials]

    def run(self, out: Any = None) -> int:
        """Run the trials not yet done; returns 0 when every trial finished or diverged, 1 when some failed."""
        out = out or sys.stdout
        self.root.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.root):
            write_manifest(self.root, self.manifest)
            runner = JobRunner(self.jobs(), self.root / RESULTS, self._recorded_rows())
            total, pending = len(runner.order), len(runner.pending)
            self._print_plan(total, pending, out)
            progress = _Progress(total=total, done=total - pending, parallel=self.resources.parallel)
            if pending:
                engine = make_engine(self.spec.engine, self.resources, self.spec.address)
                runner.run(engine, lambda row: print(progress.line(row), file=out, flush=True))
        order, final = runner.order, runner.job_rows()
        done = sum(r["status"] in DONE for r in final)
        failed = [r for r in final if r["status"] == "failed"]
        diverged = sum(bool(r["diverged"]) for r in final)
        print(f"sweep: {done}/{len(order)} trials done ({diverged} diverged, {len(failed)} failed); "
              f"results: {self.root / RESULTS}", file=out, flush=True)
        if failed or done < len(order):
            shown = ", ".join(f"{r['trial']} (logs/{r['trial']}.log)" for r in failed[:3])
            print(f"convvit sweep: error: {len(order) - done} trial(s) did not finish{': ' + shown if shown else ''}. "
                  "Fix: read their logs, then run the same command again to retry them", file=sys.stderr, flush=True)
            return 1
        return 0

    def _recorded_rows(self) -> list[dict[str, Any]]:
        """The rows of results.csv that can be trusted; a damaged row is left out with a warning, so that its
        trial is rebuilt from its run folder (or run again), as it would be from an empty results.csv."""
        path = self.root / RESULTS
        if not path.is_file():
            return []
        rows, problems = parse_results(path, check_run_dirs=True)
        for problem in problems:
            print(f"convvit sweep: warning: {path} {problem}; it is rebuilt from its run folder", file=sys.stderr,
                  flush=True)
        return rows

    def _print_plan(self, total: int, pending: int, out: Any) -> None:
        spec, res = self.spec, self.resources
        print(f"sweep: {len(spec.models)} model(s) x {len(spec.optimizers)} optimizer(s) x {spec.samples} samples = "
              f"{total} trials; {total - pending} done, {pending} to run, {res.parallel} at a time, "
              f"{res.cpus_per_trial} CPU thread(s)"
              + (f" and {res.gpus_per_trial:g} GPU(s)" if res.gpus_per_trial else "")
              + f" each, engine {spec.engine}", file=out)
        for opt, rs in self.ranges.items():
            parts = [f"{k} {r.low:.3g}..{r.high:.3g} (good {r.good:.3g}: {r.source})" for k, r in rs.items()]
            print(f"  {opt}: " + ", ".join(parts), file=out)
        print(f"  results: {self.root / RESULTS}  (errors: top-1 % on the validation split)", file=out, flush=True)


class _Progress:
    """``[3/16] TRIAL lr 0.0012 wd 0.04: best 12.34% final 12.50%  41.2 s | 1m23s elapsed, ~4m10s left``."""

    def __init__(self, total: int, done: int, parallel: int) -> None:
        self.total, self.done, self.parallel = total, done, parallel
        self.ran = 0
        self.start = time.monotonic()

    def line(self, row: dict[str, Any]) -> str:
        self.done += 1
        self.ran += 1
        elapsed = time.monotonic() - self.start
        left = elapsed / self.ran * (self.total - self.done)
        outcome = {"finished": f"best {_fmt(row['best_error'])} final {_fmt(row['final_error'])}",
                   "diverged": "diverged (NaN loss)"}.get(row["status"],
                                                          f"{row['status']} (see logs/{row['trial']}.log)")
        seconds = f"  {format_duration(row['seconds'])}" if row.get("seconds") is not None else ""
        return (f"[{self.done}/{self.total}] {row['trial']} lr {row['lr']:.3g} wd {row['wd']:.3g}: {outcome}{seconds}"
                f" | {format_duration(elapsed)} elapsed, ~{format_duration(left)} left")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def run_sweep(spec: SweepSpec, command: str = "") -> int:
    """Check, plan and run a sweep (see :class:`Sweep`); returns the exit status."""
    return Sweep(spec, command).run()
