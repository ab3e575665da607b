"""convvit sweep end to end: a 2 x 2 x 2 sweep of a few steps on synthetic data, killed part way and resumed."""
from __future__ import annotations

import json
import re
from pathlib import Path

from sweep_helpers import MODELS

from convvit.cli import main as convvit_main
from convvit.sweep.core import Sweep, SweepSpec
from convvit.sweep.results import COLUMNS, read_manifest


def test_results_csv(killed_and_resumed):
    out, rows = killed_and_resumed["out"], killed_and_resumed["after"]
    assert killed_and_resumed["code"] == 0, killed_and_resumed["output"]
    assert (out / "results.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    assert len(rows) == 8 and len({r["trial"] for r in rows}) == 8
    for row in rows:
        assert row["epochs"] == 2 and row["val_split"] == "train-holdout" and row["num_classes"] == 10
        assert row["seed"] == row["sample"]  # sweep seed 0: sample i trains with seed i
        assert row["seconds"] > 0
        run_dir = out / row["run_dir"]
        assert run_dir.parent.name == row["trial"] and (run_dir / "metrics.csv").is_file()
        record = json.loads((run_dir / "trial.json").read_text())
        if row["optimizer"] == "adamw":
            assert row["status"] == "finished" and not row["diverged"]
            errors = [e for _, _, e in record["val_errors"]]
            assert len(errors) == 2  # validated every epoch, on the held-out quarter of the training set
            assert row["best_error"] == round(min(errors), 4) and row["final_error"] == round(errors[-1], 4)
        else:  # lr >= 1e5: the loss is NaN within the first steps
            assert row["status"] == "diverged" and row["diverged"]
            assert row["final_error"] == 90.0  # a NaN model is worth chance: 10 classes
            assert "NonFiniteLossError" in record["message"]


def test_samples_are_seeded_and_paired(killed_and_resumed):
    rows = {r["trial"]: r for r in killed_and_resumed["after"]}
    manifest = read_manifest(killed_and_resumed["out"])
    assert manifest["models"] == MODELS.split(",") and manifest["optimizers"] == ["adamw", "sgd"]
    # the base config's adamw lr 1e-3 / wd 0.05: 1/8x..4x; sgd's lr from --lr, its wd the paper's
    assert manifest["ranges"]["adamw"] == {"lr": {"low": 1.25e-4, "high": 4e-3}, "wd": {"low": 0.00625, "high": 0.2}}
    assert manifest["ranges"]["sgd"]["lr"] == {"low": 1e5, "high": 1e6}
    for opt in ("adamw", "sgd"):
        for i in range(2):
            c, p = rows[f"vit_c_nano_32px-{opt}-s{i:03d}"], rows[f"vit_p_nano_32px-{opt}-s{i:03d}"]
            assert (c["lr"], c["wd"], c["seed"]) == (p["lr"], p["wd"], p["seed"])  # paired across models
            r = manifest["ranges"][opt]
            assert r["lr"]["low"] <= c["lr"] <= r["lr"]["high"] and r["wd"]["low"] <= c["wd"] <= r["wd"]["high"]
    # the same command plans the same trials
    spec = SweepSpec(config=str(killed_and_resumed["base"]), models=MODELS.split(","), optimizers=["adamw", "sgd"],
                     samples=2, out=str(killed_and_resumed["out"]), lr=["sgd=1e5,1e6"], check_config=False)
    for trial in Sweep(spec).trials:
        assert (rows[trial.trial]["lr"], rows[trial.trial]["wd"]) == (trial.lr, trial.wd)


def test_resume_after_kill(killed_and_resumed):
    before = {r["trial"]: r for r in killed_and_resumed["before"] if r["status"] in ("finished", "diverged")}
    after = {r["trial"]: r for r in killed_and_resumed["after"]}
    out, output = killed_and_resumed["out"], killed_and_resumed["output"]
    assert 2 <= len(before) < 8
    for trial, row in before.items():  # recorded before the kill: kept as they were
        assert after[trial] == row
    # done at the restart: those recorded, and any that finished after the kill (read back from their trial.json)
    done = int(re.search(r"(\d+) done, (\d+) to run", output).group(1))
    assert len(before) <= done < 8 and f"{done} done, {8 - done} to run" in output
    assert output.count("] vit_") == 8 - done  # one progress line per trial run on resume
    assert "[8/8]" in output and "left" in output and "8/8 trials done" in output
    for trial, row in after.items():
        versions = sorted(p.name for p in (out / "runs" / trial).iterdir())
        assert row["run_dir"] == f"runs/{trial}/{versions[-1]}"  # the newest run is the result
        for old in versions[:-1]:  # a trial the kill interrupted ran again from the start, in a new version_N
            record = out / "runs" / trial / old / "trial.json"
            assert not record.exists() or json.loads(record.read_text())["status"] == "interrupted"


def test_rerun_when_done_runs_nothing(killed_and_resumed, capsys):
    from convvit.cli.sweep import main

    assert main(killed_and_resumed["args"]) == 0
    out = capsys.readouterr().out
    assert "8 done, 0 to run" in out and "8/8 trials done (4 diverged, 0 failed)" in out


def test_every_plot_written(killed_and_resumed, tmp_path):
    out = killed_and_resumed["out"]
    assert convvit_main(["plot", "edf", str(out)]) == 0
    assert convvit_main(["plot", "lrwd", str(out), "--reps", "200"]) == 0
    assert convvit_main(["plot", "curves", str(out)]) == 0
    runs = sorted(str(out / r["run_dir"]) for r in killed_and_resumed["after"] if r["optimizer"] == "adamw")
    assert convvit_main(["plot", "curves", *runs, "--out", str(tmp_path / "c.png")]) == 0
    for png in [out / "plots" / f"{n}.png" for n in ("edf", "lrwd", "curves")] + [tmp_path / "c.png"]:
        assert png.stat().st_size > 1000 and png.with_suffix(".csv").stat().st_size > 0
    assert (out / "plots" / "lrwd_ranges.csv").read_text().count("\n") == 1 + 2 * 4  # lr and wd per group
    edf = (out / "plots" / "edf.csv").read_text().splitlines()
    assert len(edf) == 1 + 8
    curves = (tmp_path / "c.csv").read_text().splitlines()
    assert curves[0] == "run,label,epoch,val_error" and len(curves) == 1 + 4 * 2  # 4 runs x 2 epochs


def _copy_of_sweep(killed_and_resumed, tmp_path) -> tuple[Path, list[str]]:
    """A copy of the finished sweep folder (run dirs are relative to it) and the sweep's arguments for it."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(killed_and_resumed["out"], copy, ignore=shutil.ignore_patterns(".lock"))
    args = list(killed_and_resumed["args"])
    args[args.index("--out") + 1] = str(copy)
    return copy, args


def test_damaged_rows_are_rebuilt_from_their_run_folders(killed_and_resumed, tmp_path, capsys):
    from convvit.cli.sweep import main
    from convvit.sweep.results import read_results

    copy, args = _copy_of_sweep(killed_and_resumed, tmp_path)
    results = copy / "results.csv"
    lines = results.read_text().splitlines()
    cells = lines[2].split(",")
    cells[COLUMNS.index("best_error")] = "abc"
    lines[2] = ",".join(cells)
    lines[3] = ",".join(lines[3].split(",")[:5])  # a row with too few values
    cut = "\n".join(lines)
    # the file cut inside the last row's run_dir, as `head -c N` leaves it: "runs/T/version_0" became "ru"
    results.write_text(cut[:cut.rindex(",") + 3])
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "8 done, 0 to run" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 3, captured.err
    assert "row 3" in warnings[0] and "best_error is 'abc'" in warnings[0]
    assert "row 4" in warnings[1] and "5 values" in warnings[1]
    assert "row 9" in warnings[2] and "run_dir 'ru' does not exist" in warnings[2]
    assert all("rebuilt from its run folder" in w for w in warnings)
    rebuilt = read_results(results)
    keys = [k for k in COLUMNS if k != "seconds"]
    assert [{k: r[k] for k in keys} for r in rebuilt] == [{k: r[k] for k in keys} for r in killed_and_resumed["after"]]
    assert convvit_main(["plot", "curves", str(copy)]) == 0


def test_results_csv_that_is_not_a_table_is_one_line(killed_and_resumed, tmp_path, capsys):
    from convvit.cli.sweep import main

    copy, args = _copy_of_sweep(killed_and_resumed, tmp_path)
    results = copy / "results.csv"
    original = results.read_bytes()
    for garbage, words in [(original.replace(b"trial,", b"trail,", 1), "lacks the column(s) trial"),
                           (original[:200] + bytes(range(128, 256)) + original[200:], "not text")]:
        results.write_bytes(garbage)
        assert main(args) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and str(results) in err and words in err and "row " in err, err
        assert f"mv {results} {results}.bad" in err and "Traceback" not in err
        assert results.read_bytes() == garbage  # left as it was for the user to look at
