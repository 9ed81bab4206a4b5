"""Templated descriptions: they name the defect type, where it is and how big, the same every time."""

from __future__ import annotations

from edge_inspector.dataset.describe import describe, location, size
from edge_inspector.envelope import Box

SHAPE = (600, 900)


def test_location_and_size_follow_the_box():
    assert location(Box(10, 10, 40, 40, 1.0), SHAPE) == "at the top left"
    assert location(Box(430, 280, 470, 320, 1.0), SHAPE) == "in the centre"
    assert location(Box(860, 560, 890, 590, 1.0), SHAPE) == "at the bottom right"
    assert location(Box(430, 560, 470, 590, 1.0), SHAPE) == "at the bottom"
    assert size(Box(0, 0, 10, 10, 1.0), SHAPE) == "small"
    assert size(Box(0, 0, 50, 30, 1.0), SHAPE) == "medium"
    assert size(Box(0, 0, 200, 30, 1.0), SHAPE) == "large"


def test_a_description_names_the_type_and_is_fixed_by_its_key():
    box = Box(10, 10, 20, 20, 1.0)  # 10 px of a 600 px frame
    text = describe("spurious_copper", box, SHAPE, "part-1")
    assert text.startswith("small spurious copper at the top left: ") and "\n" not in text
    assert describe("spurious_copper", box, SHAPE, "part-1") == text
    assert len({describe("open", box, SHAPE, f"p{i}") for i in range(30)}) > 1  # not one sentence
    assert "scratch" in describe("scratch", None, SHAPE, "k")  # a type without phrases of its own
    assert "defect" in describe(None, None, SHAPE, "k")  # a good part
