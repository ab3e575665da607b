"""Engines that run a sweep's trials: a local process pool, or Ray Tune (one machine or a cluster).

An engine gets the trials still to run as :class:`~convvit.sweep.trial.TrialJob` objects and hands each result
row to ``on_result`` in the calling thread as soon as the trial ends, so the sweep can write results.csv after
every trial. Both run each trial through :func:`~convvit.sweep.trial.run_trial`: the same subprocess, the same
row. :class:`JobRunner` is the resume loop around an engine: it skips the jobs that already have a result and
keeps a results.csv of all of them (``convvit sweep`` and the report scripts in benchmarks/ run jobs with it).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from convvit.signals import kept_handlers
from convvit.sweep.results import DONE, sort_rows, write_results
from convvit.sweep.space import SweepError
from convvit.sweep.trial import TrialJob, recorded_row, run_trial

__all__ = [
    "ENGINES", "Resources", "LocalEngine", "RayEngine", "make_engine", "check_ray", "check_reachable",
    "threads_per_trial", "Engine", "JobRunner",
]

ENGINES = ("local", "ray")
OnResult = Callable[[dict[str, Any]], None]


def threads_per_trial(parallel: int, cpus_per_trial: int | None = None) -> int:
    """CPU threads each of ``parallel`` trials gets: ``cpus_per_trial`` when given, else an equal share of the
    machine's cores (at least one)."""
    return cpus_per_trial or max(1, (os.cpu_count() or 1) // parallel)


@dataclass(frozen=True)
class Resources:
    """What each trial gets: CPU threads (OMP_NUM_THREADS) and GPUs, and how many trials run at once."""

    parallel: int
    cpus_per_trial: int
    gpus_per_trial: float = 0.0


class LocalEngine:
    """K trials at a time on this machine, each a subprocess with its share of the cores.

    With ``gpus_per_trial`` > 0, each of the K slots is given its own GPUs through ``CUDA_VISIBLE_DEVICES``.
    """

    name = "local"

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def _slot_env(self, slot: int) -> dict[str, str]:
        gpus = int(self.resources.gpus_per_trial)
        if gpus <= 0:
            return {}
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(slot * gpus + i) for i in range(gpus))}

    def run(self, jobs: Sequence[TrialJob], on_result: OnResult) -> None:
        k = max(1, min(self.resources.parallel, len(jobs)))
        free_slots = list(range(k))
        pending = list(jobs)
        running: dict[Future, int] = {}
        with ThreadPoolExecutor(max_workers=k, thread_name_prefix="trial") as pool:
            try:
                while pending or running:
                    while pending and free_slots:
                        slot, job = free_slots.pop(0), pending.pop(0)
                        job.env = {**job.env, **self._slot_env(slot)}
                        running[pool.submit(run_trial, job, self._started)] = slot
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        free_slots.append(running.pop(future))
                        row = future.result()
                        on_result(row)
            except BaseException:
                pending.clear()
                self.stop()  # the trials save last.ckpt and exit; the pool then waits for them
                raise

    def _started(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs = {p for p in self._procs if p.poll() is None} | {proc}

    def stop(self) -> None:
        """Ask every running trial to stop (SIGTERM: it stops between steps and saves ``last.ckpt``)."""
        with self._lock:
            for proc in self._procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)


def check_ray() -> None:
    """Ray is an optional extra: say how to install it before anything starts."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.tune") is None:
        raise SweepError("--engine ray needs Ray Tune, which is not installed. Fix: pip install 'convvit[ray]' "
                         "(or pip install 'ray[tune]'), or run the sweep with --engine local")


def check_reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody listens on: ray.init retries such an address for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", "ray://...": Ray resolves and reports these itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise SweepError(f"no Ray cluster answers at --address {address} ({err.strerror or err}). Fix: start one "
                         "with `ray start --head --port=PORT` and pass HEAD_IP:PORT, or --address auto on a node of "
                         "the cluster") from None


def _ray_trial(config: dict[str, Any]) -> None:
    """The Ray Tune trainable: one trial as a subprocess on whichever node Ray placed it, its row reported back."""
    import json

    from ray import tune

    job = TrialJob(**config["job"])
    # Ray sets CUDA_VISIBLE_DEVICES for the GPUs it gave this trial; the subprocess inherits it
    row = run_trial(job)
    tune.report({"row": json.dumps(row)})


class RayEngine:
    """The trials as Ray Tune trials: ``ray.init()`` here, or ``ray.init(address)`` to join a running cluster.

    Each trial asks Ray for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs; at most ``parallel`` run at once.
    Run directories live in the sweep folder, so on several machines that folder must be on storage every node
    mounts at the same path (NFS, a cluster file system); Ray's own trial state goes to ``SWEEP/ray``.
    """

    name = "ray"

    def __init__(self, resources: Resources, address: str | None = None, num_cpus: int | None = None) -> None:
        check_ray()
        self.resources = resources
        self.address = address
        self.num_cpus = num_cpus

    def run(self, jobs: Sequence[TrialJob], on_result: OnResult) -> None:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        import ray
        from ray import tune

        started_here = not ray.is_initialized()
        if started_here:
            if self.address:
                try:
                    ray.init(address=self.address, log_to_driver=False)
                except ConnectionError as err:
                    raise SweepError(
                        f"could not join the Ray cluster at --address {self.address} ({err}). Fix: start it with "
                        "`ray start --head` and pass the head's IP:PORT (or auto on a node of the cluster); if the "
                        "cluster uses token authentication, set RAY_AUTH_MODE=token here with its token "
                        "(~/.ray/auth_token or RAY_AUTH_TOKEN)"
                    ) from None
            else:
                # "local": a new instance of our own, never a cluster some earlier `ray start` left an address of
                ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         log_to_driver=False)
        try:
            with kept_handlers():
                self._fit(jobs, on_result, tune)
        finally:
            if started_here:
                ray.shutdown()

    def _fit(self, jobs: Sequence[TrialJob], on_result: OnResult, tune: Any) -> None:
        import json

        class Rows(tune.Callback):
            """Hands each trial's row to the sweep as it arrives (Tune calls this in the driver)."""

            def __init__(self, on_result: OnResult) -> None:
                self.on_result = on_result

            def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
                if "row" in result and getattr(self, "on_result", None) is not None:
                    self.on_result(json.loads(result["row"]))

            def __getstate__(self) -> dict:  # Tune saves its callbacks with the experiment; the sweep is not saved
                return {}

        by_id = {job.trial["trial"]: job.to_dict() for job in jobs}
        root = Path(jobs[0].root)
        trainable = tune.with_resources(
            _ray_trial, {"cpu": self.resources.cpus_per_trial, "gpu": self.resources.gpus_per_trial}
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"job": tune.grid_search(list(by_id.values()))},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=self.resources.parallel,
                trial_name_creator=lambda t: t.config["job"]["trial"]["trial"],
                trial_dirname_creator=lambda t: t.config["job"]["trial"]["trial"],
            ),
            run_config=tune.RunConfig(
                name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",  # one Tune experiment per invocation of the sweep
                storage_path=str(root / "ray"),
                verbose=0,
                callbacks=[Rows(on_result)],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        tuner.fit()


def make_engine(name: str, resources: Resources, address: str | None = None) -> LocalEngine | RayEngine:
    """The engine called ``name`` (``local`` or ``ray``; ``address`` joins a running Ray cluster)."""
    return RayEngine(resources, address) if name == "ray" else LocalEngine(resources)


class Engine(Protocol):
    def run(self, jobs: Sequence[TrialJob], on_result: OnResult) -> None: ...


class JobRunner:
    """Resumable jobs: each job runs until it has a result (it finished or diverged), once.

    On construction the jobs are sorted into those with a result -- a finished or diverged row of ``recorded``
    (the rows read back from ``results``), else the newest ``trial.json`` of the job's run folder (the job
    ended but its row never reached ``results``) -- and :attr:`pending`, which never ran, failed or were
    interrupted, and ``results`` is written. :meth:`run` runs the pending jobs on an engine and rewrites
    ``results`` after each one: one row per job in job order, then the recorded rows of jobs no longer asked
    for. An interrupted job leaves no row: it runs again next time.
    """

    def __init__(self, jobs: Sequence[TrialJob], results: str | Path,
                 recorded: Iterable[Mapping[str, Any]] = ()) -> None:
        self.results = Path(results)
        self.order = [job.trial["trial"] for job in jobs]
        self.rows: dict[str, Mapping[str, Any]] = {row["trial"]: row for row in recorded}
        self.pending: list[TrialJob] = []
        for job in jobs:
            name = job.trial["trial"]
            if self.rows.get(name, {}).get("status") in DONE:
                continue
            row = recorded_row(job)  # a finished run is read back, never trained again
            if row is not None:
                self.rows[name] = row
            else:
                self.pending.append(job)
        self._write()

    def _write(self) -> None:
        write_results(self.results, sort_rows(self.rows.values(), self.order))

    def run(self, engine: Engine, on_row: OnResult | None = None) -> None:
        """Run the pending jobs on ``engine``; ``on_row`` sees each result row after it is written."""

        def on_result(row: dict[str, Any]) -> None:
            if row["status"] == "interrupted":  # not a result: it runs again when resumed
                return
            self.rows[row["trial"]] = row
            self._write()
            if on_row is not None:
                on_row(row)

        if self.pending:
            engine.run(self.pending, on_result)

    def job_rows(self) -> list[Mapping[str, Any]]:
        """The rows of the jobs asked for that have one, in job order."""
        return [self.rows[name] for name in self.order if name in self.rows]
