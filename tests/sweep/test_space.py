"""Sampling of the (lr, wd) trials: seeded, log-uniform within the ranges, paired, order-free, prefix-stable."""
from __future__ import annotations

import math

import numpy as np
import pytest

from convvit.sweep.space import Range, SweepError, around, make_trials, parse_range, sample_log_uniform

RANGES = {"adamw": {"lr": around(1e-3, "test"), "wd": around(0.05, "test")},
          "sgd": {"lr": around(0.1, "test"), "wd": around(3e-5, "test")}}


def test_around_is_the_papers_eighth_to_four_times():
    r = around(2e-3, "paper")
    assert (r.low, r.high, r.good) == (2.5e-4, 8e-3, 2e-3)


def test_parse_range_puts_the_good_value_where_the_paper_has_it():
    r = parse_range("2.5e-4,8e-3", "--lr")
    assert (r.low, r.high) == (2.5e-4, 8e-3) and r.good == pytest.approx(2e-3)


def test_same_seed_same_samples_and_models_paired():
    a = make_trials(["m1", "m2"], ["adamw", "sgd"], 4, RANGES, seed=3)
    b = make_trials(["m1", "m2"], ["adamw", "sgd"], 4, RANGES, seed=3)
    assert a == b
    assert a != make_trials(["m1", "m2"], ["adamw", "sgd"], 4, RANGES, seed=4)
    by_id = {t.trial: t for t in a}
    for opt in ("adamw", "sgd"):
        for i in range(4):
            t1, t2 = by_id[f"m1-{opt}-s{i:03d}"], by_id[f"m2-{opt}-s{i:03d}"]
            assert (t1.lr, t1.wd, t1.seed) == (t2.lr, t2.wd, t2.seed) == (t1.lr, t1.wd, 3 + i)
    # ordered by sample first: a sweep stopped part way has the same samples done for every model
    assert [t.sample for t in a[:4]] == [0, 0, 0, 0]


def test_order_free_and_prefix_stable():
    both = {t.trial: t for t in make_trials(["m"], ["adamw", "sgd"], 8, RANGES, seed=0)}
    for t in make_trials(["m"], ["sgd"], 3, RANGES, seed=0):  # another optimizer list, fewer samples
        assert both[t.trial] == t


def test_log_uniform_within_range():
    r = Range(1e-4, 1e-1, 1e-2)
    rng = np.random.default_rng(0)
    values = np.array([sample_log_uniform(rng, [r])[0] for _ in range(4000)])
    assert values.min() >= r.low and values.max() <= r.high
    logs = (np.log(values) - math.log(r.low)) / (math.log(r.high) - math.log(r.low))
    # uniform in log space: each decade holds about a third of the samples
    assert np.histogram(logs, bins=3, range=(0, 1))[0] / len(logs) == pytest.approx([1 / 3] * 3, abs=0.03)
    assert all(float(f"{v:.3g}") == v for v in values[:50])  # 3 significant digits, as trained


@pytest.mark.parametrize("text, words", [
    ("1e-2,1e-4", "LOW must be below HIGH"), ("1e-3,1e-3", "LOW must be below HIGH"),
    ("0,1e-2", "positive"), ("-1,1", "positive"), ("1e-3", "LOW,HIGH"), ("a,b", "not a number"),
])
def test_bad_ranges(text, words):
    with pytest.raises(SweepError, match=words):
        parse_range(text, "--lr")
