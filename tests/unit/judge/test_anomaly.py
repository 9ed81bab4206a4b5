from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Box, MapSummary, Regions
from edge_inspector.judge.anomaly import AnomalyJudge, AnomalyJudgeConfig


def regions(score, boxes=()):
    return Regions(score=score, boxes=tuple(boxes), summary=MapSummary(score, 0, 0, 0), model="m")


def test_p_defective_rises_through_the_threshold():
    judge = AnomalyJudge(AnomalyJudgeConfig(), threshold=1.0)
    frame = PartFactory(1).trigger("c").frame(None, error="x")
    clean = judge.judge(frame, regions(0.4), 0)
    boxed = judge.judge(frame, regions(2.0, [Box(0, 0, 10, 10, 2.0)]), 0)
    assert not clean.defective and clean.p_defective < 0.05 and clean.confidence > 0.95
    assert boxed.defective and boxed.p_defective > 0.99
    assert clean.decided_by == boxed.decided_by == "regions"
