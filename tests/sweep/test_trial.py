"""convvit.sweep.trial: which run folder a trial's row is read from."""
import json

from convvit.sweep.trial import RECORD_FILE, TrialJob, recorded_row


def _job(tmp_path) -> TrialJob:
    trial = {"trial": "t0", "model": "vit_c_nano_32px", "optimizer": "adamw", "sample": 0, "lr": 1e-3, "wd": 0.05,
             "seed": 0}
    return TrialJob(trial=trial, argv=["fit"], root=str(tmp_path), run_parent=str(tmp_path / "runs" / "t0"),
                    log=str(tmp_path / "logs" / "t0.log"))


def _record(folder, error):
    folder.mkdir(parents=True)
    (folder / RECORD_FILE).write_text(json.dumps({"status": "finished", "epochs": 2, "best_error": error,
                                                  "final_error": error, "num_classes": 10, "seconds": 1.0}))


def test_the_row_of_a_lost_trial_comes_from_its_newest_run_by_number(tmp_path):
    job = _job(tmp_path)
    assert recorded_row(job) is None  # no run folder yet
    _record(tmp_path / "runs" / "t0" / "version_9", 30.0)
    _record(tmp_path / "runs" / "t0" / "version_10", 20.0)  # newer, though it sorts first as text
    (tmp_path / "runs" / "t0" / "version_11-partial").mkdir()  # not a version folder of Lightning's naming
    row = recorded_row(job)
    assert row["final_error"] == 20.0 and row["run_dir"] == "runs/t0/version_10"
