"""Golden parity: a quantized checkpoint's P(defective) against its unquantized original.

    python tools/parity.py ORIGINAL_DIR QUANTIZED_DIR [--manifest M] [--n 8] [--tolerance 0.05] [--json OUT]
    python tools/parity.py RUN_DIR/merged RUN_DIR/awq --json RUN_DIR/parity.json   # after a fine-tune

Both models are loaded through the production path (the VLM judge's loader and prompt) one after the
other, and P(defective) is read from the decision token's logits on the same fixed parts (a manifest,
or seeded synthetic bare-PCB parts). Exit status 1 when the largest difference exceeds the tolerance:
run it on every quantization.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_parts import Part, read_manifest, synthetic_parts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ParityReport:
    p_original: list[float]
    p_quantized: list[float]
    tolerance: float

    @property
    def diffs(self) -> list[float]:
        return [abs(a - b) for a, b in zip(self.p_original, self.p_quantized, strict=True)]

    @property
    def max_diff(self) -> float:
        return max(self.diffs)

    @property
    def agreement(self) -> float:
        pairs = zip(self.p_original, self.p_quantized, strict=True)
        return sum((a >= 0.5) == (b >= 0.5) for a, b in pairs) / len(self.p_original)

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance

    def to_json(self, original: Path, quantized: Path, names: list[str]) -> dict:
        return {"original": str(original), "quantized": str(quantized), "tolerance": self.tolerance,
                "max_diff": self.max_diff, "agreement": self.agreement, "ok": self.ok, "n": len(names),
                "parts": [{"name": n, "p_original": a, "p_quantized": b}
                          for n, a, b in zip(names, self.p_original, self.p_quantized, strict=True)]}


def p_defective(model_dir: Path, parts: list[Part], recipe: Path, device: str = "auto") -> list[float]:
    """P(defective) from the logits (no sampling) for each part, through the production judge."""
    import gc

    from edge_inspector.judge.vlm import VlmJudgeConfig, build

    cfg = VlmJudgeConfig(model_dir=model_dir, recipe=recipe, votes=0, device=device,
                         cascade={"enabled": False})
    judge = build(cfg, warm_up=False)
    out = [judge.judge(p.frame(), p.regions(), p.frame().deadline_mono).details["p_logit"] for p in parts]
    del judge
    gc.collect()
    return out


def compare(original: Path, quantized: Path, parts: list[Part], recipe: Path, tolerance: float,
            device: str = "auto") -> ParityReport:
    return ParityReport(p_defective(original, parts, recipe, device), p_defective(quantized, parts, recipe, device),
                        tolerance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("original", type=Path)
    ap.add_argument("quantized", type=Path)
    ap.add_argument("--manifest", type=Path, help="labelled parts (default: synthetic bare-PCB parts)")
    ap.add_argument("--n", type=int, default=8, help="synthetic parts to use without a manifest")
    ap.add_argument("--recipe", type=Path, default=REPO / "configs/recipes/pcb.yaml")
    ap.add_argument("--tolerance", type=float, default=0.05, help="largest allowed |dP(defective)|")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the report as JSON (e.g. RUN_DIR/parity.json)")
    args = ap.parse_args(argv)
    parts = read_manifest(args.manifest) if args.manifest else synthetic_parts(args.n, seed=7)
    r = compare(args.original, args.quantized, parts, args.recipe, args.tolerance, args.device)
    for part, a, b in zip(parts, r.p_original, r.p_quantized, strict=True):
        print(f"{part.name:32s} P_orig={a:.4f} P_quant={b:.4f} |d|={abs(a - b):.4f}")
    if args.json:
        args.json.write_text(json.dumps(r.to_json(args.original, args.quantized, [p.name for p in parts]),
                                        indent=2) + "\n", encoding="utf-8")
    verdict = "PASS" if r.ok else "FAIL"
    print(f"{verdict}: max |dP(defective)| = {r.max_diff:.4f} (tolerance {args.tolerance}), "
          f"decision agreement {r.agreement:.0%} over {len(parts)} parts")
    return 0 if r.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
