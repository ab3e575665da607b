"""DeiT distillation: the loss against a hand computation, a frozen teacher kept out of checkpoints, resume,
and the errors a user can cause."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY, fit, interrupted_at_epoch, run_dir

from convvit.cli import main
from convvit.errors import UsageError
from convvit.training.distillation import Distillation, distillation_loss

DISTILLED = ["--model.model_kwargs", "{distilled: true}"]


def test_loss_equals_hand_computation():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    teacher = torch.tensor([[0.0, 3.0, 0.0], [1.0, 0.0, 2.0]])
    base = torch.tensor(0.7)
    # hard: cross-entropy of the student's distillation logits against the teacher's argmax (classes 1 and 2)
    ce = [-(s[c] - math.log(sum(math.exp(v) for v in s))) for s, c in zip(student.tolist(), (1, 2))]
    hard = distillation_loss(base, student, teacher, "hard", alpha=0.25, tau=1.0)
    assert hard.item() == pytest.approx(0.75 * 0.7 + 0.25 * sum(ce) / 2, rel=1e-6)
    # soft: sum over the batch and classes of p_t (log p_t - log p_s) at temperature tau, / (B * C), * tau^2
    tau, kl = 2.0, 0.0
    for s, t in zip(student.tolist(), teacher.tolist()):
        zs, zt = sum(math.exp(v / tau) for v in s), sum(math.exp(v / tau) for v in t)
        for vs, vt in zip(s, t):
            pt, ps = math.exp(vt / tau) / zt, math.exp(vs / tau) / zs
            kl += pt * (math.log(pt) - math.log(ps))
    soft = distillation_loss(base, student, teacher, "soft", alpha=0.5, tau=tau)
    assert soft.item() == pytest.approx(0.5 * 0.7 + 0.5 * kl / 6 * tau * tau, rel=1e-6)


def test_settings_are_checked():
    with pytest.raises(UsageError, match="needs a teacher"):
        Distillation(type="hard")  # UsageError: a ConvvitError, one line and exit 2 from the CLI
    with pytest.raises(UsageError, match="none, soft, hard"):
        Distillation(type="medium", teacher="t.ckpt")
    with pytest.raises(UsageError, match="alpha"):
        Distillation(type="soft", teacher="t.ckpt", alpha=1.5)


def _student(root, teacher_ckpt, *extra):
    return fit(root, *DISTILLED, "--model.distillation.type", "hard", "--model.distillation.teacher",
               str(teacher_ckpt), "--test_after_fit", "false", *extra)


def test_teacher_stays_frozen_and_out_of_the_checkpoint(trained_run, tmp_path, monkeypatch):
    teacher_ckpt = trained_run / "checkpoints" / "last.ckpt"
    seen = {}
    from convvit.training import module as module_mod

    load = module_mod.load_teacher

    def keep(*args, **kwargs):
        seen["teacher"] = load(*args, **kwargs)
        seen["before"] = {k: v.clone() for k, v in seen["teacher"].state_dict().items()}
        return seen["teacher"]

    monkeypatch.setattr(module_mod, "load_teacher", keep)
    assert _student(tmp_path, teacher_ckpt) == 0
    teacher = seen["teacher"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, seen["before"][k]), k
    ckpt = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(k.startswith(("model.", "ema_model.")) for k in ckpt["state_dict"])  # no teacher weights
    assert "model.head_dist.weight" in ckpt["state_dict"]
    record = ckpt["convvit"]["teacher"]
    assert record["file"] == str(teacher_ckpt) and len(record["sha256"]) == 64
    assert ckpt["hyper_parameters"]["distillation"]["type"] == "hard"


def test_resume_with_a_teacher_is_exact_and_refuses_another(trained_run, tmp_path, monkeypatch):
    teacher_ckpt = trained_run / "checkpoints" / "last.ckpt"
    recipe = ["--trainer.max_epochs", "2", "--model.mixup_alpha", "0.8"]
    assert _student(tmp_path / "a", teacher_ckpt, *recipe) == 0
    with interrupted_at_epoch(monkeypatch, 1):
        assert _student(tmp_path / "b", teacher_ckpt, *recipe) == 1
    ckpt = run_dir(tmp_path / "b") / "checkpoints" / "last.ckpt"
    other = tmp_path / "other.ckpt"
    other.write_bytes(teacher_ckpt.read_bytes())
    assert _student(tmp_path / "b", other, *recipe, "--ckpt_path", str(ckpt)) != 0  # another teacher: refused,
    assert not run_dir(tmp_path / "b", version=1).exists()  # before a run folder is made
    assert _student(tmp_path / "b", teacher_ckpt, *recipe, "--ckpt_path", str(ckpt)) == 0
    a = torch.load(run_dir(tmp_path / "a") / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(run_dir(tmp_path / "b", version=1) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_teacher_errors_are_one_line(trained_run, tmp_path, capsys):
    teacher_ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert _student(tmp_path, teacher_ckpt, "--data.synthetic_num_classes", "3") != 0
    err = capsys.readouterr().err
    assert "teacher" in err and "10 classes" in err and "3 classes" in err and "Traceback" not in err
    rc = main(["fit", *TINY, "--trainer.default_root_dir", str(tmp_path), "--model.distillation.type", "soft",
               "--model.distillation.teacher", str(teacher_ckpt)])
    err = capsys.readouterr().err
    assert rc != 0 and "distillation token" in err and "Traceback" not in err
    assert _student(tmp_path, tmp_path / "missing.ckpt") != 0
    assert "does not exist" in capsys.readouterr().err


def test_a_changed_teacher_file_is_refused_on_resume():
    from convvit.errors import CheckpointConflictError
    from convvit.training.distillation import check_same_teacher

    saved = {"teacher": "t.ckpt", "file": "t.ckpt", "sha256": "a" * 64}
    check_same_teacher(saved, dict(saved))
    check_same_teacher(None, dict(saved))  # a checkpoint from before distillation was recorded
    with pytest.raises(CheckpointConflictError, match="same teacher file"):
        check_same_teacher(saved, {**saved, "sha256": "b" * 64})


def test_a_timm_convnet_trained_by_convvit_teaches(tmp_path):
    """The paper's setting: a convnet teacher (timm's, trained by convvit fit), given as its training checkpoint
    or as a timm model name with a plain weights file."""
    from convvit.inference.trained import load_trained_model

    teacher_root = tmp_path / "teacher"
    assert fit(teacher_root, "--model.name", "resnet10t", "--test_after_fit", "false") == 0
    teacher_ckpt = run_dir(teacher_root, name="synthetic-resnet10t") / "checkpoints" / "last.ckpt"
    assert _student(tmp_path / "a", teacher_ckpt) == 0
    weights = tmp_path / "resnet10t.pth"
    torch.save(load_trained_model(teacher_ckpt)[0].state_dict(), weights)
    assert _student(tmp_path / "b", "resnet10t", "--model.distillation.teacher_checkpoint", str(weights)) == 0
    assert _student(tmp_path / "c", "resnet10t") != 0  # a name needs its weights: nothing is downloaded
