"""Calibration: the uncalibrated combination, the logistic fit, the cascade threshold, the recipe block."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspector.envelope import Vote
from edge_inspector.judge.vlm.calibration import (
    calibrated_probability,
    fit_calibration,
    fit_cascade,
    fit_logistic,
    raw_probability,
)
from edge_inspector.judge.vlm.vote import tally
from edge_inspector.recipe import Calibration, load_recipe, write_calibration


def t(yes: int, no: int, bad: int = 0):
    return tally([Vote(True)] * yes + [Vote(False)] * no + [Vote(None)] * bad, ())


def test_uncalibrated_is_the_mean_of_logit_and_votes():
    assert raw_probability(0.8, t(1, 4)) == pytest.approx(0.5 * (0.8 + 0.2))
    assert raw_probability(0.8, None) == 0.8
    assert raw_probability(0.8, t(0, 0, 5)) == 0.8  # no valid vote: the logits alone
    assert calibrated_probability(0.8, t(1, 4), None) == raw_probability(0.8, t(1, 4))


def test_calibrated_probability_applies_the_logistic_map():
    cal = Calibration(w_logit=1.0, w_votes=0.0, bias=0.0, votes=5)
    assert calibrated_probability(0.9, t(0, 5), cal) == pytest.approx(0.9, abs=1e-6)
    cal = Calibration(w_logit=0.0, w_votes=0.0, bias=2.0, votes=5)
    assert calibrated_probability(0.1, t(0, 5), cal) == pytest.approx(1 / (1 + np.exp(-2)))


def test_fit_logistic_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5 * x[:, 1] + 0.3)))
    y = rng.random(4000) < p
    w = fit_logistic(x, y, l2=0.0)
    assert w == pytest.approx([1.5, -0.5, 0.3], abs=0.15)


def test_fit_on_separable_data_stays_finite():
    w = fit_logistic(np.array([[-1.0], [-2.0], [1.0], [2.0]]), np.array([0, 0, 1, 1]))
    assert np.all(np.isfinite(w)) and w[0] > 0


def test_fit_calibration_improves_an_overconfident_judge():
    rng = np.random.default_rng(1)
    labels = rng.random(400) < 0.3
    # the logits say 0.9 for every defective part and for 40 % of the good ones
    p_logits = [0.9 if y or rng.random() < 0.4 else 0.1 for y in labels]
    tallies = [t(4, 1) if y else t(1, 4) for y in labels]  # the votes are informative
    cal = fit_calibration(p_logits, tallies, labels, votes=5)
    assert cal.metrics["brier_calibrated"] < cal.metrics["brier_raw"]
    assert cal.w_votes > 0 and cal.n_parts == 400 and cal.votes == 5
    assert cal.cascade_pass_below is None  # no scores given


def test_fit_with_votes_zero_uses_the_logits_only():
    cal = fit_calibration([0.2, 0.3, 0.7, 0.8] * 10, [None] * 40, [False, False, True, True] * 10, votes=0)
    assert cal.w_votes == 0.0 and cal.w_logit > 0


def test_cascade_threshold_misses_no_defective_part():
    scores = [0.5, 0.8, 1.0, 1.2, 3.0, 4.0, 2.5]
    labels = [False, False, False, False, True, True, True]
    threshold, p = fit_cascade(scores, labels, margin=0.9)
    assert threshold == pytest.approx(2.25)
    assert all(s >= threshold for s, y in zip(scores, labels, strict=True) if y)
    assert p == pytest.approx(0.5 / 5)  # (0 defective + 1/2) / (4 below + 1)
    assert fit_cascade([1.0, 2.0], [False, False]) == (None, None)


def test_write_calibration_replaces_the_block_and_keeps_the_rest(recipe_path):
    original = recipe_path.read_text()
    recipe_path.write_text("# a comment the engineer wrote\n" + original)
    cal = Calibration(w_logit=1.2, w_votes=0.8, bias=-0.1, votes=5, cascade_pass_below=2.0,
                      cascade_p_defective=0.01, n_parts=10, metrics={"brier_raw": 0.2})
    write_calibration(recipe_path, cal)
    write_calibration(recipe_path, cal.model_copy(update={"bias": 0.4}))
    text = recipe_path.read_text()
    assert text.startswith("# a comment the engineer wrote\n")
    assert text.count("calibration:") == 1 and text.count("# written by tools/calibrate.py") == 1
    recipe = load_recipe(recipe_path)
    assert recipe.calibration.bias == 0.4 and recipe.calibration.cascade_pass_below == 2.0
    assert recipe.defect_names == ("short", "pin_hole")
