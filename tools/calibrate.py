"""Fit the VLM judge's calibration on labelled recordings and write it into the recipe.

    python tools/calibrate.py --manifest parts.jsonl --model-dir DIR --recipe configs/recipes/pcb.yaml \
        [--votes 5] [--device auto] [--dry-run]

Each part of the manifest (format: tools/judge_parts.py) is judged with the cascade off; its
P(defective) from the logits, its vote tally, its label and (when recorded) its anomaly score feed
:func:`edge_inspector.judge.vlm.calibration.fit_calibration`: a logistic map from the two signals to
a calibrated probability, and the cascade's pass threshold (below every defective part's score, with
a margin). The result replaces the recipe's ``calibration:`` block; the policy's thresholds then act
on the calibrated value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_parts import Part, read_manifest  # noqa: E402

from edge_inspector.errors import JudgeError  # noqa: E402
from edge_inspector.judge.vlm.calibration import fit_calibration  # noqa: E402
from edge_inspector.judge.vlm.config import VlmJudgeConfig  # noqa: E402
from edge_inspector.judge.vlm.vote import tally  # noqa: E402
from edge_inspector.recipe import Calibration, write_calibration  # noqa: E402


def calibrate(parts: list[Part], config: VlmJudgeConfig, fitted_on: str = "") -> Calibration:
    """Judge every part (cascade off) and fit on the raw signals (P(defective) from the logits, votes)."""
    from edge_inspector.judge.vlm import build

    judge = build(config.model_copy(update={"cascade": config.cascade.model_copy(update={"enabled": False})}),
                  warm_up=False)
    names = judge.recipes.recipe.defect_names
    p_logits, tallies, labels, scores = [], [], [], []
    skipped: dict[int, str] = {}
    for i, part in enumerate(parts):
        frame = part.frame()
        try:
            verdict = judge.judge(frame, part.regions(), frame.deadline_mono)
        except JudgeError as exc:  # the station would fail-safe this part: nothing to calibrate on
            print(f"{part.name}: skipped: {exc}", file=sys.stderr)
            skipped[i] = str(exc)
            continue
        p_logits.append(verdict.details["p_logit"])
        tallies.append(tally(verdict.votes, names) if verdict.votes else None)
        labels.append(part.defective)
        scores.append(part.score)
    if (why := missing_class(parts, skipped)) is not None:
        raise SystemExit(why)
    have_scores = all(s is not None for s in scores)
    return fit_calibration(p_logits, tallies, labels, config.votes, scores if have_scores else None,
                           model=judge.fingerprint, fitted_on=fitted_on)


def missing_class(parts: list[Part], skipped: dict[int, str]) -> str | None:
    """Why the judged parts lack the good or the defective ones (None: both are there): none in the
    manifest, or every one skipped, with how many of those had no boxes and the first error."""
    for defective, name in ((False, "good"), (True, "defective")):
        of_class = [i for i, p in enumerate(parts) if p.defective == defective]
        if any(i not in skipped for i in of_class):
            continue
        if not of_class:
            return f"calibration needs good and defective parts: the manifest has no {name} part"
        no_boxes = sum(1 for i in of_class if not parts[i].boxes)
        boxes = (f"; {no_boxes} of them have no boxes, so the judge saw no region crops (record each "
                 "part's boxes from the regions stage, as the station stores them)") if no_boxes else ""
        return (f"calibration needs good and defective parts: all {len(of_class)} {name} parts of the "
                f"manifest were skipped{boxes}; first error: {skipped[of_class[0]]}")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True, help="labelled parts (JSON lines)")
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--recipe", type=Path, required=True, help="the recipe to calibrate (rewritten)")
    ap.add_argument("--votes", type=int, default=5)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="print the calibration, do not write it")
    args = ap.parse_args(argv)
    config = VlmJudgeConfig(model_dir=args.model_dir.resolve(), recipe=args.recipe.resolve(), votes=args.votes,
                            device=args.device, seed=args.seed)
    parts = read_manifest(args.manifest)
    cal = calibrate(parts, config, fitted_on=str(args.manifest))
    print(f"fitted on {cal.n_parts} parts: w_logit={cal.w_logit:.3f} w_votes={cal.w_votes:.3f} bias={cal.bias:.3f}")
    for k, v in cal.metrics.items():
        print(f"  {k}: {v:.4f}")
    if cal.cascade_pass_below is not None:
        passed = sum(1 for p in parts if not p.defective and p.score is not None and p.score < cal.cascade_pass_below)
        good = sum(1 for p in parts if not p.defective)
        print(f"  cascade: pass below score {cal.cascade_pass_below:.4f}; would pass {passed} of {good} good "
              f"parts without the VLM, and no defective part")
    if not args.dry_run:
        write_calibration(args.recipe, cal)
        print(f"wrote the calibration into {args.recipe}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
