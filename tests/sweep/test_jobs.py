"""The sweep's public trial builder and job runner, without training: what the report scripts in benchmarks/
build their runs with (trial_argv, trial_job, threads_per_trial, JobRunner)."""
import json
from pathlib import Path

import pytest

from convvit.sweep.core import SWEEP_DEFAULTS, SweepSpec, trial_argv, trial_job
from convvit.sweep.engines import JobRunner, threads_per_trial
from convvit.sweep.results import read_results
from convvit.sweep.space import Trial
from convvit.sweep.trial import RECORD_CALLBACK


def _spec(tmp_path, **over):
    return SweepSpec(config=str(tmp_path / "base.yaml"), models=["vit_c_nano_32px"], optimizers=["adamw"], samples=1,
                     out=str(tmp_path), **over)


def _value(argv, option):
    return argv[argv.index(option) + 1]


def test_trial_argv_leaves_what_the_base_config_sets_and_the_trials_none_to_it(tmp_path):
    base = {"data": {"val_fraction": 0.2}, "trainer": {"check_val_every_n_epoch": 1}}
    spec = _spec(tmp_path, overrides=["--trainer.max_epochs", "3"])
    trial = Trial("t-0", "vit_c_nano_32px", "sgd", 0, 0.05, 3e-4, seed=7)
    argv = trial_argv(spec, base, trial, tmp_path / "w")
    assert argv[:3] == ["fit", "--config", str((tmp_path / "base.yaml").resolve())]
    assert "--data.val_fraction" not in argv and "--trainer.check_val_every_n_epoch" not in argv  # the config's
    assert _value(argv, "--test_after_fit") == SWEEP_DEFAULTS["test_after_fit"]
    assert (_value(argv, "--model.optimizer"), _value(argv, "--model.lr"), _value(argv, "--model.weight_decay")) == (
        "sgd", "0.05", "0.0003")
    assert _value(argv, "--seed_everything") == "7" and _value(argv, "--trainer.max_epochs") == "3"
    assert _value(argv, "--trainer.default_root_dir") == str(tmp_path / "w" / "runs")
    assert _value(argv, "--name") == "t-0"
    assert argv[-1] == RECORD_CALLBACK

    config_settings = trial_argv(spec, base, Trial("t-1", "vit_c_nano_32px", None, 0, None, None, seed=0), tmp_path)
    assert not {"--model.optimizer", "--model.lr", "--model.weight_decay"} & set(config_settings)


def test_trial_job_runs_in_its_own_folders(tmp_path):
    trial = Trial("t-0", "vit_c_nano_32px", "adamw", 2, 1e-3, 0.05, seed=2)
    job = trial_job(_spec(tmp_path), {}, trial, tmp_path / "w", threads=3)
    assert job.trial == trial.to_dict() and job.threads == 3 and job.root == str(tmp_path / "w")
    assert job.run_parent == str(tmp_path / "w" / "runs" / "t-0")
    assert job.log == str(tmp_path / "w" / "logs" / "t-0.log")


def test_threads_per_trial(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert threads_per_trial(3) == 2 and threads_per_trial(16) == 1 and threads_per_trial(2, cpus_per_trial=5) == 5


def _jobs(tmp_path, names):
    spec = _spec(tmp_path)
    return [trial_job(spec, {}, Trial(name, "vit_c_nano_32px", "adamw", i, 1e-3, 0.05, seed=i), tmp_path, 1)
            for i, name in enumerate(names)]


def _finished(job, error, version=0):
    run = Path(job.run_parent) / f"version_{version}"
    run.mkdir(parents=True)
    (run / "trial.json").write_text(json.dumps({"status": "finished", "epochs": 1, "best_error": error,
                                                "final_error": error, "num_classes": 10, "seconds": 5.0}))


class FakeEngine:
    """Each job's result without training: ``statuses`` by trial name (finished when not named)."""

    def __init__(self, statuses=None):
        self.statuses, self.ran = statuses or {}, []

    def run(self, jobs, on_result):
        for job in jobs:
            self.ran.append(job.trial["trial"])
            status = self.statuses.get(job.trial["trial"], "finished")
            on_result({**job.trial, "epochs": 1, "best_error": 20.0, "final_error": 20.0, "diverged": False,
                       "status": status, "val_split": "train-holdout", "num_classes": 10, "seconds": 3.0,
                       "run_dir": f"runs/{job.trial['trial']}/version_1"})


def test_the_runner_runs_only_jobs_without_a_result_and_keeps_results_csv(tmp_path):
    jobs = _jobs(tmp_path, ["a", "b", "c", "d", "e"])
    _finished(jobs[1], 15.0)  # ended, but its row never reached results.csv: read back from trial.json
    recorded = [{"trial": "a", "status": "diverged"}, {"trial": "c", "status": "failed"},  # c runs again
                {"trial": "gone", "status": "finished"}]  # a trial no longer asked for: kept, last
    runner = JobRunner(jobs, tmp_path / "results.csv", recorded)
    assert [j.trial["trial"] for j in runner.pending] == ["c", "d", "e"]
    engine, seen = FakeEngine({"e": "interrupted"}), []
    runner.run(engine, seen.append)
    assert engine.ran == ["c", "d", "e"] and [r["trial"] for r in seen] == ["c", "d"]  # interrupted: no result
    assert [r["trial"] for r in runner.job_rows()] == ["a", "b", "c", "d"]
    assert runner.rows["b"]["final_error"] == 15.0 and runner.rows["c"]["status"] == "finished"

    jobs = _jobs(tmp_path, ["a", "b", "c", "d", "e"])[1:]  # resumed from the run folders alone
    for job in jobs[1:3]:
        _finished(job, 20.0, version=1)
    again = JobRunner(jobs, tmp_path / "results.csv")
    assert [j.trial["trial"] for j in again.pending] == ["e"]
    assert [r["trial"] for r in read_results(tmp_path / "results.csv")] == ["b", "c", "d"]


def test_the_runner_does_not_start_an_engine_for_nothing(tmp_path):
    jobs = _jobs(tmp_path, ["a"])
    _finished(jobs[0], 12.0)

    class NoEngine:
        def run(self, jobs, on_result):
            pytest.fail("ran an engine with nothing to run")

    JobRunner(jobs, tmp_path / "results.csv").run(NoEngine())
