"""benchmarks/distillation_report.py without training: its jobs, its reading of the results, its report files."""
import argparse

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def report():
    return load_script("distillation_report")


def _args(report, tmp_path, **over):
    args = report.build_parser().parse_args(["--work", str(tmp_path / "w"), "--docs", str(tmp_path / "docs")])
    return argparse.Namespace(**{**vars(args), **over})


def test_student_jobs_distil_from_the_right_teacher(report, tmp_path):
    args = _args(report, tmp_path)
    teachers = {"convnet": tmp_path / "convnet.ckpt", "vit_c": tmp_path / "vit_c.ckpt"}
    jobs = report.student_jobs(args, teachers)
    assert len(jobs) == len(report.STUDENTS) * len(report.CONDITIONS) * 2  # two seeds by default
    by_name = {job.trial["trial"]: job.argv for job in jobs}
    hard = by_name["ViT_P-hard-convnet-seed1"]
    assert hard[hard.index("--model.distillation.teacher") + 1] == str(teachers["convnet"])
    assert hard[hard.index("--model.distillation.type") + 1] == "hard" and "{distilled: true}" in hard
    none = by_name["ViT_C-none-seed0"]
    assert "--model.distillation.teacher" not in none and "{distilled: true}" in none  # same architecture
    assert "--data.val_fraction" in none and none[none.index("--test_after_fit") + 1] == "false"


def _row(model, condition, seed, test_error):
    teacher = "convnet" if condition.endswith("convnet") else ""
    return {"trial": f"{model}-{condition}-{seed}", "model": model, "condition": condition, "teacher": teacher,
            "seed": seed, "final_error": test_error + 0.1, "test_error": test_error, "seconds": 400.0}


def test_reading_and_report_files(report, tmp_path):
    rows = [_row("vit_p_nano_32px", "none", s, 11.0 + s) for s in (0, 1)]
    rows += [_row("vit_p_nano_32px", "hard-convnet", s, 9.5 + s) for s in (0, 1)]
    rows += [_row("vit_c_nano_32px", "none", s, 9.0 + s) for s in (0, 1)]
    summary = report.summarize(rows)
    p_none = next(r for r in summary if r["student"] == "ViT_P" and r["condition"] == "none")
    assert p_none["mean_test_error"] == pytest.approx(11.5) and p_none["seed_spread"] == pytest.approx(1.0)
    # every cell's two seeds differ by 1 point: pooled sd sqrt(0.5), 3 degrees of freedom; a difference of two
    # 2-run means has the interval t(3) * sd * sqrt(1/2 + 1/2) = 3.182 * 0.7071 = 2.25 points
    assert report.pooled_seed_sd(rows) == (pytest.approx(0.5 ** 0.5), 3)
    text = " ".join(report.verdicts(summary, rows))
    assert "+2.00 ± 2.25 points from ViT_C's" in text
    assert "hard-convnet changes ViT_P's error by -1.50 ± 2.25 points, within the noise; 75% of the gap" in text
    one_seed = [r for r in rows if r["seed"] == 0]
    assert report.pooled_seed_sd(one_seed) is None
    ci = (report.one_run_ci95(11.0) ** 2 + report.one_run_ci95(9.5) ** 2) ** 0.5
    assert f"-1.50 ± {ci:.2f} points, beyond the noise" in " ".join(report.verdicts(report.summarize(one_seed),
                                                                                      one_seed))
    teachers = [{"model": "resnet10t", "final_error": 8.0, "test_error": 8.2, "seconds": 300.0}]
    args = _args(report, tmp_path, limit_batches=2)  # 2 batches of 128 images an epoch, 6 epochs
    path = report.write_report(args, teachers, rows)
    md = path.read_text()
    # compute: 3 forward passes' multiply-adds per training image (+ the teacher's forward when distilled)
    images = 2 * 128 * 6
    convnet = report.forward_flops("resnet10t")
    ci = report.one_run_ci95(8.2)  # 1.96 * sqrt(0.082 * 0.918 / 10,000) = 0.54 points
    assert ci == pytest.approx(0.5378, abs=1e-3)
    assert (f"| resnet10t | 8.00 | 8.20 ± {ci:.2f} | {convnet / 1e6:.1f} | {3 * convnet * images / 1e12:.1f} "
            "| 300 |") in md
    p_flops = report.forward_flops("vit_p_nano_32px", distilled=True) / 1e6
    assert f"| ViT_P | {p_flops:.1f} | none | 2 | 11.00 12.00 | 11.50 | 1.00 |" in md
    assert md.count("| 400 |") == 3  # each student row's mean wall time
    assert "75% of the gap" in md and "degrees of freedom" in md and "7 training" in md
    student = report.forward_flops("vit_p_nano_32px", distilled=True)
    by_condition = {r["condition"]: float(r["compute"]) for r in rows if r["model"] == "vit_p_nano_32px"}
    assert by_condition["none"] == pytest.approx(3 * student * images / 1e12)
    assert by_condition["hard-convnet"] == pytest.approx((3 * student + convnet) * images / 1e12)
    assert (tmp_path / "docs/distillation/distillation.png").stat().st_size > 0
    assert (tmp_path / "docs/distillation/distillation.csv").read_text().startswith("trial,model,condition")


def test_runs_a_work_folder_holds_are_read_back_not_trained(report, tmp_path, monkeypatch):
    """A work folder as earlier versions of the script left it (WORK/runs/TRIAL/version_N/trial.json) resumes:
    its finished runs are rows again and nothing is trained."""
    import json
    import sys

    args = _args(report, tmp_path)
    jobs = list(report.teacher_jobs(args).values())
    for job, version in zip(jobs, (0, 2)):
        run = tmp_path / "w" / "runs" / job.trial["trial"] / f"version_{version}"
        run.mkdir(parents=True)
        (run / "trial.json").write_text(json.dumps({"status": "finished", "epochs": 6, "best_error": 9.0,
                                                    "final_error": 9.5, "num_classes": 10, "seconds": 600.0}))

    def no_training(resources):
        pytest.fail("trained a run the work folder holds")

    monkeypatch.setattr(sys.modules["fashion_mnist_report"], "LocalEngine", no_training)
    rows = report.train_runs(jobs, args.work, args.parallel)
    assert [r["run_dir"] for r in rows] == ["runs/teacher-resnet10t/version_0",
                                            "runs/teacher-vit_c_nano_32px/version_2"]
    assert [r["final_error"] for r in rows] == [9.5, 9.5] and (tmp_path / "w" / "results.csv").is_file()
