"""The soak's judge faults (pipeline.test_judge_faults, a test facility): each is a NO-READ."""

import json
import cv2

from edge_inspector.capture.base import PartFactory
from edge_inspector.config import load_config
from edge_inspector.stages import build_stages
from tests.helpers import wait_until


def test_off_by_default_and_each_mode_is_a_no_read(station_config, tmp_path, product_dir):
    assert load_config(station_config()).pipeline.test_judge_faults is None
    control = tmp_path / "judge-faults.json"
    cfg = load_config(station_config(pipeline={"test_judge_faults": str(control), "judge_grace_ms": 50},
                                     policy={"deadline_ms": 60_000}))
    stages = build_stages(cfg)
    image = cv2.imread(str(product_dir / "good" / "good-0.png"), cv2.IMREAD_GRAYSCALE)
    roomy, tight = PartFactory(60.0), PartFactory(0.2)  # the stall (1 s) outlasts only the tight one

    def inspect(parts=roomy):
        return stages.inspector.inspect(parts.trigger("cam").frame(image)).decision

    try:
        assert inspect().outcome.value == "PASS"  # no file: the real judge
        for mode, reason in (("fail", "judge_error"), ("nan", None), ("stall", "timeout")):
            control.write_text(json.dumps({"mode": mode, "stall_s": 1.0}))
            d = inspect(tight if mode == "stall" else roomy)
            assert d.outcome.value == "NO-READ" and d.action.value == "REJECT", (mode, d)
            assert reason is None or d.reason.value == reason, (mode, d)
        control.write_text(json.dumps({"mode": "ok"}))
        assert wait_until(lambda: stages.inspector.judge.busy_for_s == 0.0, 30)  # the stall ended
        assert inspect().outcome.value == "PASS"  # the real judge again
    finally:
        stages.inspector.judge.close()
