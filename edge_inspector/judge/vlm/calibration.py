"""From the judge's raw signals to a calibrated P(defective), and the fits tools/calibrate.py makes
(numpy only).

The raw signals of a part: ``p_logit``, P(defective) read from the decision token's logits (the
probability mass of "yes" over "yes" + "no"), and the vote tally. Uncalibrated, the two are averaged.
Calibrated, a logistic model on logit(p_logit) and logit(smoothed vote share) gives the probability
(Platt scaling with two inputs), fitted on labelled recordings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_inspector.judge.vlm.vote import Tally
from edge_inspector.recipe import Calibration

_EPS = 1e-4


def _logit(p: float | np.ndarray) -> float | np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def features(p_logit: float, t: Tally | None) -> tuple[float, float]:
    """The two inputs of the calibration: logit(p_logit), logit(smoothed share) (0 without votes)."""
    return float(_logit(p_logit)), float(_logit(t.smoothed_share)) if t is not None and t.n else 0.0


def raw_probability(p_logit: float, t: Tally | None) -> float:
    """Uncalibrated: the mean of p_logit and the vote share (p_logit alone without valid votes)."""
    share = t.share if t is not None else None
    return p_logit if share is None else 0.5 * (p_logit + share)


def calibrated_probability(p_logit: float, t: Tally | None, cal: Calibration | None) -> float:
    if cal is None:
        return raw_probability(p_logit, t)
    x_logit, x_votes = features(p_logit, t)
    z = cal.bias + cal.w_logit * x_logit + cal.w_votes * x_votes
    return float(1.0 / (1.0 + np.exp(-z)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Weights [w_1..w_d, bias] of a logistic regression by Newton's method with a small L2 penalty
    (which keeps the fit finite on separable data)."""
    x = np.column_stack([np.asarray(x, float), np.ones(len(x))])
    y = np.asarray(y, float)
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + reg * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_cascade(scores: Sequence[float], labels: Sequence[bool], margin: float = 0.9
                ) -> tuple[float | None, float | None]:
    """The pass threshold: ``margin`` times the lowest anomaly score of a defective part, so that no
    recorded defective part would have been passed; and the smoothed P(defective) under it. None when
    there is no defective part (nothing to bound the threshold by)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    if not labels.any():
        return None, None
    threshold = float(scores[labels].min() * margin)
    below = scores < threshold
    p = (float(labels[below].sum()) + 0.5) / (float(below.sum()) + 1.0)
    return threshold, p


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def fit_calibration(p_logits: Sequence[float], tallies: Sequence[Tally | None], labels: Sequence[bool],
                    votes: int, scores: Sequence[float] | None = None, model: str = "",
                    fitted_on: str = "") -> Calibration:
    """Fit the calibration on labelled parts: one (p_logit, tally, label[, anomaly score]) each."""
    y = np.asarray(labels, bool)
    x = np.array([features(p, t) for p, t in zip(p_logits, tallies, strict=True)])
    if votes == 0:
        w_logit, bias = fit_logistic(x[:, :1], y)
        w = np.array([w_logit, 0.0, bias])
    else:
        w = fit_logistic(x, y)
    cal = Calibration(w_logit=float(w[0]), w_votes=float(w[1]), bias=float(w[2]), votes=votes,
                      model=model, n_parts=len(y), fitted_on=fitted_on)
    raw = np.array([raw_probability(p, t) for p, t in zip(p_logits, tallies, strict=True)])
    fitted = np.array([calibrated_probability(p, t, cal) for p, t in zip(p_logits, tallies, strict=True)])
    metrics = {"brier_raw": brier(raw, y), "brier_calibrated": brier(fitted, y),
               "accuracy_calibrated": float(np.mean((fitted >= 0.5) == y)), "defective_share": float(y.mean())}
    update: dict = {"metrics": metrics}
    if scores is not None:
        update["cascade_pass_below"], update["cascade_p_defective"] = fit_cascade(scores, y)
    return cal.model_copy(update=update)
