"""The EMA of the weights: it pickles for spawned processes, and a checkpoint's EMA weights fit the resuming run."""
from __future__ import annotations

import pickle

import torch
import torch.nn as nn

from convvit.checkpoints import layout
from convvit.training.ema import build_ema, fit_checkpoint_ema


def test_the_ema_pickles_its_rounding_generator_as_bytes():
    ema = build_ema(nn.Linear(3, 2), decay=0.9, warmup=True)
    ema._sr_generator.manual_seed(7)
    torch.rand(3, generator=ema._sr_generator)
    # a Generator pickles its state as a tensor, which torch.multiprocessing would share by file descriptor
    assert "_sr_generator" not in ema.__getstate__()
    copy = pickle.loads(pickle.dumps(ema))
    assert torch.equal(copy._sr_generator.get_state(), ema._sr_generator.get_state())
    assert not any(p.requires_grad for p in copy.parameters())
    assert copy.decay == 0.9 and copy.use_warmup and copy.warmup_power == 0.75


def test_a_checkpoint_ema_is_seeded_kept_or_dropped_to_fit_the_run():
    weights = {"model.head.weight": torch.ones(2), "model.head.bias": torch.zeros(2)}
    averaged = {**weights, "ema_model.module.head.weight": torch.full((2,), 0.5),
                "ema_model.module.head.bias": torch.zeros(2)}

    seeded = dict(weights)
    fit_checkpoint_ema(seeded, keeps_ema=True)  # a run without EMA, resumed with it: the average starts there
    assert layout.model_weights(seeded, ema=True).keys() == layout.model_weights(seeded).keys()
    assert torch.equal(seeded["ema_model.module.head.weight"], torch.ones(2))

    kept = dict(averaged)
    fit_checkpoint_ema(kept, keeps_ema=True)
    assert torch.equal(kept["ema_model.module.head.weight"], torch.full((2,), 0.5))

    dropped = dict(averaged)
    fit_checkpoint_ema(dropped, keeps_ema=False)
    assert dropped == weights
