"""The search space of a stability sweep: (lr, wd) ranges per optimizer and the seeded trials drawn from them.

The ViT_C paper (Xiao et al. 2021, section 5.3) samples 64 (lr, wd) pairs per model and optimizer, each
log-uniform over 1/8x to 4x a good value. Trials here are drawn the same way, with three properties that make
sweeps comparable and resumable:

* paired: every model gets the same (lr, wd, seed) for sample ``i`` of an optimizer;
* order-free: each optimizer draws from its own stream (seeded by the sweep seed and its name), so listing
  the optimizers in another order, or adding one, leaves the others' samples as they were;
* prefix-stable: sample ``i`` does not depend on the sample count, so ``--samples 32`` extends a 16-sample
  sweep instead of replacing it.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from convvit.errors import SweepError  # defined with the other user-facing errors; imported from here too

__all__ = [
    "SweepError", "Range", "PAPER_GOOD", "PAPER_BATCH_SIZE", "LOW_FACTOR", "HIGH_FACTOR", "Trial",
    "parse_range", "around", "sample_log_uniform", "make_trials",
]

# The paper's ranges are 1/8x..4x a good value: models still train well below it, not far above.
LOW_FACTOR, HIGH_FACTOR = 1 / 8, 4.0
# Good values behind the paper's ranges (ImageNet, batch 2048): AdamW lr 2.5e-4..8e-3, wd 0.02..0.8;
# SGD lr 0.1..3.2, wd 4e-6..1.2e-4 (REFERENCE.md section 1). Used for an optimizer the base config does not set.
PAPER_GOOD: dict[str, tuple[float, float]] = {"adamw": (2e-3, 0.2), "sgd": (0.8, 3e-5)}
PAPER_BATCH_SIZE = 2048


@dataclass(frozen=True)
class Range:
    """A closed range ``[low, high]`` sampled log-uniformly, and the good value it is centred on (marked in plots)."""

    low: float
    high: float
    good: float
    source: str = ""  # where the good value came from, for the sweep's opening lines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SweepError(f"{option} {text!r} is not a number. Fix: give LOW,HIGH such as {option} 1e-4,1e-2") from None


def parse_range(text: str, option: str) -> Range:
    """``"LOW,HIGH"`` -> :class:`Range`; both positive (they are sampled on a log scale) and ``LOW < HIGH``.

    The good value sits where the paper's sits in its ranges: 3/5 of the way up in log space (1/8x..4x).
    """
    parts = text.split(",")
    if len(parts) != 2:
        raise SweepError(f"{option} {text!r} is not LOW,HIGH. Fix: give two numbers, e.g. {option} 1e-4,1e-2")
    low, high = (_float(p.strip(), option) for p in parts)
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        raise SweepError(f"{option} {text}: both ends must be positive (the range is sampled log-uniformly). "
                         f"Fix: e.g. {option} 1e-4,1e-2")
    if not low < high:
        raise SweepError(f"{option} {text}: LOW must be below HIGH. Fix: e.g. {option} {min(low, high):g},"
                         f"{max(low, high) * (1 if low != high else 32):g}")
    position = math.log(1 / LOW_FACTOR) / math.log(HIGH_FACTOR / LOW_FACTOR)
    good = math.exp(math.log(low) + position * (math.log(high) - math.log(low)))
    return Range(low, high, float(f"{good:.3g}"), source=f"{option} {text}")


def around(good: float, source: str) -> Range:
    """The paper's range around a good value: ``good / 8 .. good * 4``."""
    if not good > 0:
        raise SweepError(f"the good value {good:g} ({source}) is not positive, so no log range can be centred on "
                         "it. Fix: give the range with --lr LOW,HIGH / --wd LOW,HIGH")
    return Range(good * LOW_FACTOR, good * HIGH_FACTOR, good, source)


def sample_log_uniform(rng: np.random.Generator, ranges: Sequence[Range]) -> list[float]:
    """One value per range, log-uniform, rounded to 3 significant digits (so that the values in results.csv and
    on a trial's command line are the values trained with)."""
    values = []
    for r, u in zip(ranges, rng.random(len(ranges))):
        value = math.exp(math.log(r.low) + u * (math.log(r.high) - math.log(r.low)))
        values.append(float(f"{min(max(value, r.low), r.high):.3g}"))
    return values


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: a model and an optimizer at one sampled (lr, wd) with one seed. (Runs built
    like trials outside a sweep may leave the optimizer, lr or wd as None: the base config's.)"""

    trial: str  # stable id: MODEL-OPTIMIZER-sNNN
    model: str
    optimizer: str | None
    sample: int
    lr: float | None
    wd: float | None
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_trials(
    models: Sequence[str], optimizers: Sequence[str], samples: int, ranges: Mapping[str, Mapping[str, Range]],
    seed: int,
) -> list[Trial]:
    """Every (model, optimizer, sample), ordered by sample, then optimizer, then model: a sweep stopped part way
    has the same samples done for every model (the comparison stays paired).

    ``ranges[optimizer]`` holds the ``"lr"`` and ``"wd"`` :class:`Range`. Sample ``i`` trains with seed ``seed + i``.
    """
    draws: dict[str, list[list[float]]] = {}
    for opt in optimizers:
        # the optimizer's own stream: the same samples whatever the other optimizers are
        rng = np.random.default_rng([seed, zlib.crc32(opt.encode())])
        draws[opt] = [sample_log_uniform(rng, (ranges[opt]["lr"], ranges[opt]["wd"])) for _ in range(samples)]
    return [
        Trial(f"{model}-{opt}-s{i:03d}", model, opt, i, *draws[opt][i], seed=seed + i)
        for i in range(samples)
        for opt in optimizers
        for model in models
    ]
