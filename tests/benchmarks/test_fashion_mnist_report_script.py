"""benchmarks/fashion_mnist_report.py without training: its analysis and writing stages on a fabricated sweep
(results.csv + sweep.json) and fabricated convergence rows, and the bookkeeping that makes a rerun resume."""
import json
from pathlib import Path

import pytest
from benchmark_scripts import load_script  # tests/benchmark_scripts.py

from convvit.sweep.results import write_manifest, write_results

C, P = "vit_c_nano_32px", "vit_p_nano_32px"
# (lr, wd) samples per optimizer, shared by both models as the sweep shares them
SAMPLES = {"adamw": [(1e-3, 0.05), (3e-3, 0.1), (8e-3, 0.02), (5e-4, 0.2)],
           "sgd": [(0.02, 1e-4), (0.1, 3e-4), (0.3, 5e-5), (0.05, 1e-3)]}
# final validation errors (%) per sample; None: diverged
ERRORS = {(C, "adamw"): [14.0, 12.5, 13.0, 16.0], (P, "adamw"): [15.0, 13.25, 19.0, 17.0],
          (C, "sgd"): [15.0, 13.0, 14.0, 13.5], (P, "sgd"): [18.0, 16.0, None, 17.0]}
TEST = {f"{C}-adamw-s001": 12.75, f"{C}-sgd-s001": 13.5, f"{P}-adamw-s001": 13.5, f"{P}-sgd-s001": 16.5,
        f"{C}-adamw-e01": 20.0, f"{C}-adamw-e02": 15.0, f"{P}-adamw-e01": 24.0, f"{P}-adamw-e02": 18.5}


def _load():
    return load_script("fashion_mnist_report")


@pytest.fixture(scope="module")
def report():
    return _load()


def fake_sweep(folder: Path) -> Path:
    rows = []
    for (model, opt), errors in ERRORS.items():
        for i, error in enumerate(errors):
            trial = f"{model}-{opt}-s{i:03d}"
            lr, wd = SAMPLES[opt][i]
            rows.append({"trial": trial, "model": model, "optimizer": opt, "sample": i, "lr": lr, "wd": wd,
                         "epochs": 2, "seed": i, "best_error": error if error is not None else 90.0,
                         "final_error": error if error is not None else 90.0, "diverged": error is None,
                         "status": "finished" if error is not None else "diverged", "val_split": "train-holdout",
                         "num_classes": 10, "seconds": 60.0, "run_dir": f"runs/{trial}/version_0"})
    write_results(folder / "results.csv", rows)
    write_manifest(folder, {
        "ranges": {"adamw": {"lr": {"low": 3.75e-4, "high": 1.2e-2}, "wd": {"low": 6.25e-3, "high": 0.2}},
                   "sgd": {"lr": {"low": 0.00625, "high": 0.2}, "wd": {"low": 3.75e-5, "high": 1.2e-3}}},
        "good": {"adamw": {"lr": 3e-3, "wd": 0.05}, "sgd": {"lr": 0.05, "wd": 3e-4}},
    })
    return folder


def fake_test(run_dir: Path, name: str) -> float:
    return TEST[name]


# final validation errors (%) of the chosen settings' reruns with the two other seeds (None: diverged)
RERUNS = {(C, "adamw"): [13.0, 13.5], (P, "adamw"): [14.0, 14.5], (C, "sgd"): [13.5, 14.5], (P, "sgd"): [17.0, None]}


def fake_reruns(chosen):
    return [{**chosen[group], "trial": f"{chosen[group]['trial']}-seed{seed}", "seed": seed,
             "final_error": error if error is not None else 90.0, "diverged": error is None}
            for group, errors in RERUNS.items() for seed, error in zip((4, 5), errors)]


def fake_convergence():
    return [{"model": m, "epochs": e, "lr": 3e-3, "wd": 0.1, "val_error": TEST[f"{m}-adamw-e{e:02d}"] + 0.5,
             "diverged": False, "test_error": TEST[f"{m}-adamw-e{e:02d}"], "seconds": 100.0 * e}
            for m in (C, P) for e in (1, 2)]


def test_report_tables_hold_the_numbers_of_the_csvs(report, tmp_path):
    sweep, figures = fake_sweep(tmp_path / "work" / "sweep"), tmp_path / "docs" / "fashion_mnist"
    report.draw_plots(sweep, figures)
    report.write_csv(figures / "optimizer_gap.csv", report.optimizer_rows(sweep, fake_test))
    chosen = report.chosen_runs(report.load_sweep(sweep)[0])
    report.write_csv(figures / "seeds.csv", report.seed_rows(chosen, fake_reruns(chosen)))
    conv = fake_convergence()
    report.write_csv(figures / "convergence.csv", conv)
    report.plot_convergence(conv, figures / "convergence.png")
    args = report.build_parser().parse_args(["--samples", "4", "--convergence-epochs", "1,2",
                                             "--work", str(tmp_path / "work"), "--docs", str(tmp_path / "docs")])
    context = report.report_context(args, ["--samples", "4"], ["sweep", "--out", str(sweep)],
                                    {"train": 54000, "validation": 6000, "test": 10000}, (5400.0, 2))
    md = report.write_report(figures, tmp_path / "docs" / "fashion_mnist.md", context).read_text()

    for name in ("edf.png", "edf.csv", "lrwd.png", "lrwd.csv", "lrwd_ranges.csv", "optimizer_gap.csv",
                 "seeds.csv", "convergence.csv", "convergence.png"):
        assert (figures / name).is_file(), name
    for image in ("fashion_mnist/edf.png", "fashion_mnist/lrwd.png", "fashion_mnist/convergence.png"):
        assert f"]({image})" in md
    assert "54,000" in md and "6,000" in md and "10,000" in md and "1.50 h over 2 invocation(s)" in md
    assert "python benchmarks/fashion_mnist_report.py --samples 4" in md
    # stability: best, median and the count within 4 points, per model and optimizer (ViT_P SGD: one diverged)
    assert "| ViT_C `vit_c_nano_32px` | adamw | 4 | 0 | 12.50 | 13.50 | 2/4 | 3/4 | 4/4 |" in md
    assert "| ViT_P `vit_p_nano_32px` | sgd | 4 | 1 | 16.00 | 17.50 | 2/4 | 3/4 | 3/4 |" in md
    # the bootstrap table comes from lrwd_ranges.csv
    assert "| ViT_C | adamw | lr | 0.003 |" in md
    # where each best run lies in its sampled log range; the ones near an end are named (SGD lr 0.1 of 0.00625..0.2:
    # log(16) / log(32) = 0.80, inside; AdamW wd 0.1 of 0.00625..0.2: 0.80)
    assert "| ViT_C | sgd | lr | 0.1 | 0.02 | 0.1 | 0.3 | 0.05 | 0.80 |" in md
    assert "No best run lies in the outer tenth of its range." in md
    # optimizer gap: the chosen trials (best by validation), their test errors, and the gaps
    assert "| ViT_C | sgd | `vit_c_nano_32px-sgd-s001` | 0.1 | 0.0003 | 13.00 | 13.50 | 13.50 |" in md
    assert "| ViT_C | +0.50 | +0.33 | +0.75 |" in md
    assert "| ViT_P | +2.75 | +1.92 | +3.00 |" in md
    # seeds: the chosen run, its reruns (a diverged one at chance), the reruns' mean, the mean and SD of all three
    assert "| ViT_C | adamw | 12.50 (1) | 13.00, 13.50 (4, 5) | 13.25 | 13.00 | 0.50 |" in md
    assert "| ViT_P | sgd | 16.00 (1) | 17.00, 90.00 (4, 5) | 53.50 |" in md
    # SGD - AdamW on the reruns' means, with the standard error from both cells' SDs over 2 reruns each
    assert "ViT_C +0.75 (± 0.65, one standard error)" in md
    assert "runs (104 training" not in md and "| 48 training runs" not in md
    assert "* Budget: 28 training runs" in md  # 4 x (4 samples + 2 reruns) + 2 models x 2 schedules
    # convergence: validation / test per schedule and the difference
    assert "| 1 | 20.50 / 20.00 | 24.50 / 24.00 | -4.00 |" in md
    assert "| 2 | 15.50 / 15.00 | 19.00 / 18.50 | -3.50 |" in md
    # the reading: verdicts follow the numbers
    assert "2. **Optimizer stability (AdamW - SGD gap): agrees.**" in md
    assert "3. **Convergence: agrees.**" in md
    assert "ViT_P needed 2 epochs to reach ViT_C's 1-epoch test error" in md
    assert "1. **lr / wd stability: agrees in direction, within the noise of 4 runs.**" in md  # 4/4 vs 3/4 overlap
    assert "Smoke run" not in md


def test_range_position(report):
    assert report.range_position(0.2, {"low": 0.00625, "high": 0.2}) == pytest.approx(1.0)
    assert report.range_position(0.00625 * 2 ** 2.5, {"low": 0.00625, "high": 0.2}) == pytest.approx(0.5)
    assert report.range_position(0.1, None) is None


def test_sign_test_and_wilson_interval(report):
    assert report.sign_test(0, 0) == 1.0
    assert report.sign_test(8, 0) == pytest.approx(2 / 256)
    assert report.sign_test(3, 3) == 1.0
    low, high = report.wilson(8, 16)
    assert low < 0.5 < high and high - low > 0.4  # 16 runs pin a fraction down only loosely


def test_a_recorded_test_is_not_run_again(report, tmp_path, monkeypatch):
    version = tmp_path / "tests" / "trial-a" / "version_0"
    version.mkdir(parents=True)
    (version / "metrics.csv").write_text("epoch,step,test/acc1,test/loss\n0,0,0.9125,0.3\n")
    monkeypatch.setattr(report, "convvit", lambda argv: pytest.fail(f"ran convvit {argv}"))
    assert report.ConvvitTest(tmp_path / "tests")(tmp_path / "run", "trial-a") == pytest.approx(8.75)


def test_seed_reruns_use_seeds_no_trial_had_and_the_sweep_budget(report, tmp_path):
    args = report.build_parser().parse_args(["--samples", "4", "--sweep-epochs", "3", "--work", str(tmp_path)])
    chosen = report.chosen_runs(report.load_sweep(fake_sweep(tmp_path / "sweep"))[0])
    jobs = report.seed_jobs(args, chosen, tmp_path / "seeds")
    assert report.rerun_seeds(args) == [4, 5]  # the sweep's samples 0..3 trained with seeds 0..3
    assert sorted(j.trial["trial"] for j in jobs) == sorted(f"{m}-{o}-s001-seed{k}" for m in (C, P)
                                                           for o in ("adamw", "sgd") for k in (4, 5))
    for job in jobs:
        argv = job.argv
        assert argv[argv.index("--trainer.max_epochs") + 1] == "3"
        assert argv[argv.index("--seed_everything") + 1] == str(job.trial["seed"])
        assert argv[argv.index("--model.lr") + 1] == repr(chosen[(job.trial["model"], job.trial["optimizer"])]["lr"])
        assert argv[argv.index("--model.optimizer") + 1] == job.trial["optimizer"]


def test_seed_rows_arithmetic(report, tmp_path):
    chosen = report.chosen_runs(report.load_sweep(fake_sweep(tmp_path / "sweep"))[0])
    rows = {(r["model"], r["optimizer"]): r for r in report.seed_rows(chosen, fake_reruns(chosen))}
    c = rows[(C, "sgd")]
    assert (c["chosen_val_error"], c["rerun_seeds"], c["rerun_val_errors"]) == (13.0, "4 5", "13.5 14.5")
    assert c["rerun_mean"] == pytest.approx(14.0) and c["mean"] == pytest.approx(13.6667, abs=1e-4)
    assert c["sd"] == pytest.approx(0.7638, abs=1e-4)
    assert rows[(P, "sgd")]["rerun_mean"] == pytest.approx(53.5)  # the diverged rerun counts as chance


def test_finished_convergence_runs_are_read_back_and_only_the_rest_trained(report, tmp_path, monkeypatch):
    args = report.build_parser().parse_args(["--convergence-epochs", "1,2", "--work", str(tmp_path)])
    best = {m: {"sample": 1, "lr": 3e-3, "wd": 0.1} for m in (C, P)}
    root = tmp_path / "convergence"
    jobs = report.convergence_jobs(args, best, root)
    assert [j.trial["trial"] for j in jobs] == [f"{C}-adamw-e02", f"{P}-adamw-e02", f"{C}-adamw-e01", f"{P}-adamw-e01"]
    assert "--trainer.max_epochs" in jobs[0].argv
    assert jobs[0].argv[jobs[0].argv.index("--trainer.max_epochs") + 1] == "2"
    for job in jobs[:3]:  # three runs finished in an earlier session; the fourth was killed (no record)
        run = Path(job.run_parent) / "version_0"
        run.mkdir(parents=True)
        (run / "trial.json").write_text(json.dumps({"status": "finished", "epochs": 2, "final_error": 15.0,
                                                    "best_error": 15.0, "num_classes": 10, "seconds": 5.0}))
    trained = []

    class FakeEngine:
        def __init__(self, resources):
            pass

        def run(self, pending, on_result):
            trained.extend(j.trial["trial"] for j in pending)
            for job in pending:
                on_result({**job.trial, "epochs": 1, "best_error": 20.0, "final_error": 20.0, "diverged": False,
                           "status": "finished", "val_split": "train-holdout", "num_classes": 10, "seconds": 3.0,
                           "run_dir": f"runs/{job.trial['trial']}/version_1"})

    monkeypatch.setattr(report, "LocalEngine", FakeEngine)
    rows = report.train_runs(jobs, root, parallel=2)
    assert trained == [f"{P}-adamw-e01"]
    assert [r["status"] for r in rows] == ["finished"] * 4
    assert (root / "results.csv").read_text().count("\n") == 5  # header + 4 runs


def test_a_work_folder_of_other_settings_is_refused(report, tmp_path):
    settings = {"samples": 16, "seed": 0}
    report.claim_work(tmp_path, settings)
    report.claim_work(tmp_path, settings)  # the same settings: resume
    with pytest.raises(report.ReportError, match="samples: 16 there, 2 here") as err:
        report.claim_work(tmp_path, {**settings, "samples": 2})
    assert err.value.code == 2


def test_verdicts_follow_the_sign_of_each_comparison(report):
    assert report._verdict([2, 1]) == "agrees"
    assert report._verdict([-1, -0.5]) == "does not agree"
    assert report._verdict([0, 0]) == "no difference measured"
    assert report._verdict([1, -1]) == "agrees in part"
    assert report._verdict([0, -1]) == "does not agree (the other comparisons are ties)"


def _setup_context(**over):
    context = {"splits": {"train": 45000, "validation": 5000, "test": 10000},
               "machine": {"cpu": "cpu", "cores": "16", "flags": "avx2", "torch": "2", "python": "3"},
               "base": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05, "batch_size": 100},
               "sweep_manifest": {}, "limit_batches": None, "wall": (3600.0, 1), "load": 0.5, "samples": 8,
               "seed_reruns": 2, "convergence_epochs": [1, 2], "command": "c", "date": "d", "config": "c.yaml",
               "sweep_command": "s", "sweep_epochs": 1, "sgd_why": "", "parallel": 2, "model_epochs": 1,
               "precision": "32-true", "threads": 8}
    return {**context, **over}


def test_the_setup_prose_counts_from_its_inputs(report):
    md = report.setup_section(_setup_context())
    assert "Fashion-MNIST's 50,000 training images are split into 45,000" in md
    assert "about 450 steps of batch 100" in md and "a 16-core CPU" in md
    assert "32 runs of 1 epoch(s)" in md and "* Budget: 44 training runs" in md  # 4 x (8 + 2) + 2 x 2
    smoke = report.setup_section(_setup_context(limit_batches=4))
    assert "about 4 steps of batch 100" in smoke


def test_probe_logs_live_in_docs_not_in_the_script(report):
    note = report.sgd_ranges_note()
    assert note.startswith("SGD's: the lr range") and "0.05 76.0%" in note and "\n  linearly" in note
    assert "76.0%" not in Path(report.__file__).read_text()
