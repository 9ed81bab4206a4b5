"""tools/calibrate.py says why it cannot fit: a class missing from the manifest, or every part of a
class skipped (and how many of those had no boxes), never a bare "needs good and defective parts"."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tools"))

from calibrate import missing_class  # noqa: E402
from judge_parts import Part  # noqa: E402

from edge_inspector.envelope import Box  # noqa: E402

IMAGE = np.zeros((8, 8), np.uint8)


def part(name, defective, boxes=()):
    return Part(name, IMAGE, defective, 1.0, tuple(boxes))


def test_every_good_part_skipped_for_having_no_boxes_is_said_so():
    parts = [part("g1", False), part("g2", False), part("d1", True, [Box(0, 0, 4, 4, 3.0)])]
    why = missing_class(parts, {0: "only 0 of 3 answers could be parsed", 1: "only 1 of 3"})
    assert why.startswith("calibration needs good and defective parts: all 2 good parts of the manifest "
                          "were skipped; 2 of them have no boxes")
    assert why.endswith("first error: only 0 of 3 answers could be parsed")


def test_a_class_absent_from_the_manifest_and_the_fine_case():
    parts = [part("d1", True, [Box(0, 0, 4, 4, 3.0)]), part("d2", True, [Box(0, 0, 4, 4, 3.0)])]
    assert missing_class(parts, {}) == ("calibration needs good and defective parts: the manifest has no "
                                        "good part")
    parts.append(part("g1", False))
    assert missing_class(parts, {1: "boom"}) is None  # one defective part judged is enough to fit
    assert "all 2 defective parts of the manifest were skipped; first error: a" in missing_class(
        parts, {0: "a", 1: "b"})
