"""EDF and bootstrap arithmetic on a hand-made results.csv."""
from __future__ import annotations

import csv

import pytest

from convvit import plots
from convvit.cli import main as convvit_main
from convvit.sweep.results import write_manifest, write_results

# Model A, adamw: errors 10, 12, 15 and one diverged run (chance: 90% with 10 classes); model B: 20, 21.
HAND = [
    ("A", "adamw", 0, 1e-3, 0.05, 10.0, False),
    ("A", "adamw", 1, 2e-3, 0.10, 12.0, False),
    ("A", "adamw", 2, 4e-4, 0.02, 15.0, False),
    ("A", "adamw", 3, 8e-3, 0.50, None, True),
    ("B", "adamw", 0, 1e-3, 0.05, 21.0, False),
    ("B", "adamw", 1, 2e-3, 0.10, 20.0, False),
]


@pytest.fixture
def sweep_dir(tmp_path):
    rows = [
        dict(trial=f"{m}-{o}-s{i:03d}", model=m, optimizer=o, sample=i, lr=lr, wd=wd, epochs=2, seed=i,
             best_error=(e - 1 if e else None), final_error=e, diverged=d, status="diverged" if d else "finished",
             val_split="train-holdout", num_classes=10, seconds=1.0, run_dir=f"runs/{m}-{o}-s{i:03d}/version_0")
        for m, o, i, lr, wd, e, d in HAND
    ]
    rows.append({**rows[0], "trial": "A-adamw-s009", "status": "failed", "final_error": None})  # not a result
    write_results(tmp_path / "results.csv", rows)
    write_manifest(tmp_path, {"good": {"adamw": {"lr": 1e-3, "wd": 0.05}},
                              "ranges": {"adamw": {"lr": {"low": 1.25e-4, "high": 4e-3},
                                                   "wd": {"low": 0.006, "high": 0.2}}}})
    return tmp_path


def test_edf_rows(sweep_dir):
    rows, _ = plots.load_sweep(sweep_dir)
    groups = plots.run_errors(rows, "final")
    assert sorted(r["error"] for r in groups[("A", "adamw")]) == [10.0, 12.0, 15.0, 90.0]  # failed run left out
    table = {(r["model"], r["trial"][-1]): r for r in plots.edf_rows(groups)}
    assert [(table[("A", s)]["delta"], table[("A", s)]["fraction"]) for s in "0123"] == [
        (0.0, 0.25), (2.0, 0.5), (5.0, 0.75), (80.0, 1.0)]
    assert table[("B", "1")]["delta"] == 0.0 and table[("B", "0")]["delta"] == 1.0
    assert table[("B", "0")]["fraction"] == 1.0 and table[("B", "1")]["fraction"] == 0.5
    best = plots.run_errors(rows, "best")
    assert sorted(r["error"] for r in best[("A", "adamw")]) == [9.0, 11.0, 14.0, 90.0]  # diverged: chance still


def test_edf_function():
    errors, fractions = plots.edf([3.0, 1.0, 2.0, 2.0])
    assert errors.tolist() == [1.0, 2.0, 2.0, 3.0] and fractions.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_edf_plot_and_csv(sweep_dir, capsys):
    assert convvit_main(["plot", "edf", str(sweep_dir)]) == 0
    with open(sweep_dir / "plots" / "edf.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and {r["n"] for r in table if r["model"] == "A"} == {"4"}
    assert (sweep_dir / "plots" / "edf.png").stat().st_size > 1000
    assert "edf.png" in capsys.readouterr().out


def test_bootstrap_best():
    runs = [{"error": e, "lr": lr, "wd": wd} for e, lr, wd in
            [(10.0, 1e-3, 0.05), (12.0, 2e-3, 0.1), (15.0, 4e-4, 0.02), (90.0, 8e-3, 0.5)]]
    # resamples of one run (25% of 4): the best of each is a uniformly drawn run, so the percentiles span them
    out = plots.bootstrap_best(runs, fraction=0.25, reps=4000, seed=0)
    assert out["lr"][0] == pytest.approx(4e-4) and out["lr"][2] == pytest.approx(8e-3)
    # resamples of all 4: the best run (lr 1e-3) is in 1 - (3/4)^4 = 68% of them; the median is its lr
    out = plots.bootstrap_best(runs, fraction=1.0, reps=4000, seed=0)
    assert out["lr"][1] == pytest.approx(1e-3) and out["wd"][1] == pytest.approx(0.05)
    # a single run: no spread
    single = plots.bootstrap_best(runs[:1], reps=10)
    assert single["lr"] == pytest.approx([1e-3] * 3) and single["wd"] == pytest.approx([0.05] * 3)
    assert plots.bootstrap_best(runs, reps=500, seed=1) == plots.bootstrap_best(runs, reps=500, seed=1)


def test_lrwd_plot_and_ranges(sweep_dir, capsys):
    assert convvit_main(["plot", "lrwd", str(sweep_dir), "--reps", "300"]) == 0
    with open(sweep_dir / "plots" / "lrwd_ranges.csv") as f:
        ranges = list(csv.DictReader(f))
    assert [(r["model"], r["param"]) for r in ranges] == [("A", "lr"), ("A", "wd"), ("B", "lr"), ("B", "wd")]
    assert float(ranges[0]["best_run"]) == 1e-3 and float(ranges[0]["good"]) == 1e-3
    for r in ranges:
        assert float(r["p2.5"]) <= float(r["p50"]) <= float(r["p97.5"])
    assert "bootstrap" in capsys.readouterr().out


def test_plot_errors(tmp_path, capsys):
    assert convvit_main(["plot", "edf", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convvit plot edf: error: ") and "results.csv" in err and len(err.splitlines()) == 1
    assert convvit_main(["plot", "curves", str(tmp_path)]) == 2
    assert "metrics.csv" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["edf", "lrwd", "curves"])
@pytest.mark.parametrize("damage, words", [
    (lambda text: text.replace("10.0000", "abc", 1),
     "row 2 (trial 'A-adamw-s000'): its final_error is 'abc', not a number"),
    (lambda text: text.replace("status", "state", 1), "row 1 (its header) lacks the column(s) status"),
    (lambda text: text.replace("adamw", "adamw\udcff", 2), "row 2 holds bytes that are not text"),
])
def test_damaged_results_csv_is_one_line(sweep_dir, capsys, kind, damage, words):
    results = sweep_dir / "results.csv"
    results.write_bytes(damage(results.read_text()).encode(errors="surrogateescape"))
    assert convvit_main(["plot", kind, str(sweep_dir)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(results) in err and words in err and "Fix: " in err, err
