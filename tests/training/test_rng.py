"""RNG states: the RngStates callback's checkpoint state, restored when a fit resumes (and only then), also from
checkpoints written before the callback, which kept them in the ``convvit`` metadata."""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import torch
from conftest import STEPS_PER_EPOCH, fit, run_dir

from convvit.training.rng import RngStates, collect_rng_states


def _draws() -> tuple[float, float, float]:
    return torch.rand(1).item(), float(np.random.rand()), random.random()


def _load(callback: RngStates, checkpoint: dict, fn: str) -> None:
    """What Lightning's checkpoint connector does with a callback: on_load_checkpoint, then its own state."""
    callback.on_load_checkpoint(SimpleNamespace(state=SimpleNamespace(fn=fn)), None, checkpoint)
    state = (checkpoint.get("callbacks") or {}).get(callback.state_key)
    if state:
        callback.load_state_dict(state)


def test_a_fit_restores_the_states_and_validate_leaves_them_alone():
    saved = RngStates().state_dict()
    expected = _draws()
    checkpoint = {"callbacks": {RngStates().state_key: saved}}

    _load(RngStates(), checkpoint, "fit")
    assert _draws() == expected
    _load(RngStates(), checkpoint, "validate")
    assert _draws() != expected


def test_a_checkpoint_of_the_old_layout_restores_the_states_from_its_metadata():
    legacy = {"convvit": {"val_acc1": 0.5, "val_acc1_ema": None, "rng_states": collect_rng_states()}}
    expected = _draws()
    _load(RngStates(), legacy, "fit")
    assert _draws() == expected
    # where both are present, the callback's own state wins
    newer = collect_rng_states()
    expected = _draws()
    _load(RngStates(), {**legacy, "callbacks": {RngStates().state_key: newer}}, "fit")
    assert _draws() == expected


def test_resuming_an_old_layout_checkpoint_continues_the_random_streams(tmp_path):
    """Mixup draws from numpy's generator: a resume without the saved states would mix other batches."""
    recipe = ["--model.mixup_alpha", "0.8", "--model.cutmix_alpha", "1.0", "--test_after_fit", "false"]
    assert fit(tmp_path / "first", *recipe) == 0
    ckpt = torch.load(run_dir(tmp_path / "first") / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == STEPS_PER_EPOCH
    states = ckpt["callbacks"][RngStates().state_key]
    assert set(states) >= {"torch", "numpy", "python"} and "rng_states" not in ckpt["convvit"]

    old = {**ckpt, "callbacks": {k: v for k, v in ckpt["callbacks"].items() if k != RngStates().state_key}}
    old["convvit"] = {**ckpt["convvit"], "rng_states": states}  # where convvit kept them before RngStates
    stateless = {**old, "convvit": ckpt["convvit"]}
    ends = {}
    for name, checkpoint in (("current", ckpt), ("old", old), ("stateless", stateless)):
        path = tmp_path / f"{name}.ckpt"
        torch.save(checkpoint, path)
        assert fit(tmp_path / name, *recipe, "--trainer.max_epochs", "2", "--ckpt_path", str(path)) == 0
        end = torch.load(run_dir(tmp_path / name) / "checkpoints" / "last.ckpt", weights_only=True)
        assert end["global_step"] == 2 * STEPS_PER_EPOCH
        ends[name] = end["state_dict"]
    assert all(torch.equal(ends["old"][k], v) for k, v in ends["current"].items())
    assert not all(torch.equal(ends["stateless"][k], v) for k, v in ends["current"].items())
