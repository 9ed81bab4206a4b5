"""The judge that decides from the anomaly map alone: the default when no VLM is configured."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Frame, Regions, Verdict
from edge_inspector.judge.base import Judge


class AnomalyJudgeConfig(ConfigModel):
    kind: Literal["anomaly"] = Field("anomaly", description="Decide from the anomaly map alone.")
    softness: float = Field(0.15, gt=0, description="How quickly P(defective) goes from 0 to 1 around "
                            "the regions threshold (in anomaly-score units).")


class AnomalyJudge(Judge):
    """P(defective) is a logistic of the regions score around the regions threshold: a part with a
    box is defective, and the further its strongest anomaly is past the threshold, the surer."""

    def __init__(self, cfg: AnomalyJudgeConfig, threshold: float,
                 by_camera: dict[str, float] | None = None) -> None:
        self.cfg = cfg
        self.threshold = threshold
        self.by_camera = dict(by_camera or {})  # shared by cameras whose regions thresholds differ
        ts = sorted(set(self.by_camera.values()) | {threshold})
        self.fingerprint = f"anomaly-t{'/'.join(f'{t:g}' for t in ts)}-s{cfg.softness:g}"

    def judge(self, frame: Frame, regions: Regions, deadline_mono: float) -> Verdict:
        threshold = self.by_camera.get(frame.camera, self.threshold)
        z = (regions.score - threshold) / self.cfg.softness
        p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
        defective = bool(regions.boxes)
        return Verdict(defective=defective, p_defective=p, confidence=max(p, 1 - p), decided_by="regions",
                       model=self.fingerprint, details={"boxes": len(regions.boxes)})
