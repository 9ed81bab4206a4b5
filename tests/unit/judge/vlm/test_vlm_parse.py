"""The answer parser on well-formed and adversarial text: anything unclear is invalid, never a pass."""

from __future__ import annotations

import pytest

from edge_inspector.judge.vlm.parse import MAX_DESCRIPTION, parse_answer

TAXONOMY = ("open", "short", "mousebite", "spur", "spurious_copper", "pin_hole")


def parse(text: str, n_regions: int = 2):
    return parse_answer(text, TAXONOMY, n_regions)


def test_the_asked_form():
    v = parse("defective: yes\ndefect_type: short\nregion: 2\ndescription: a bridge, between two traces")
    assert (v.defective, v.defect_type, v.region) == (True, "short", 2)
    assert v.description == "a bridge, between two traces"


def test_a_pass_carries_no_type_or_region():
    v = parse("defective: no\ndefect_type: short\nregion: 1\ndescription: looks like the reference")
    assert (v.defective, v.defect_type, v.region) == (False, None, None)


@pytest.mark.parametrize("text", [
    '{"defective": true, "defect_type": "pin hole", "region": "Region 1"}',
    '```json\n{"Defective": "Yes", "Type": "Pin-Hole", "region": 1}\n```',
    "DEFECTIVE: **Yes**\nDefect Type: PIN_HOLE\nRegion: 1",
    "defective: yes.\ndefect_type: pinhole\nregion: region 1",
])
def test_tolerated_variants(text):
    v = parse(text)
    assert (v.defective, v.defect_type, v.region) == (True, "pin_hole", 1)


def test_truncated_json_counts_when_the_decision_is_complete():
    assert parse('{"defective": "yes", "defect_ty').defective is True
    assert parse('{"defective": "no", "descr').defective is False


@pytest.mark.parametrize("text", [
    "",
    "   \n",
    '{"defective": "ye',  # truncated inside the decision
    "defective:",  # truncated right after the pre-filled start
    '{"defective": 1}',  # wrong type
    '{"defective": null, "defect_type": "short"}',
    '{"defective": ["yes"]}',
    "defective: maybe",
    "defective: not sure",
    "I'm sorry, but I can't help with that request.",
    "defective: I am sorry, I cannot assess this image.",
    "defective: The board in the frame looks fine to me.",  # prose instead of the form
    "The part is defective because a trace is broken.",  # prose without the form
    "defective: yes\ndefective: no",  # two decisions
])
def test_invalid_answers(text):
    v = parse(text)
    assert v.defective is None and not v.valid
    assert v.raw == text


def test_not_defective_is_a_pass():
    assert parse("defective: not defective").defective is False


def test_unknown_defect_type_keeps_the_decision():
    v = parse("defective: yes\ndefect_type: scratch\nregion: 1")
    assert (v.defective, v.defect_type, v.region) == (True, None, 1)


@pytest.mark.parametrize("region", ["0", "3", "7", "none", "true", "-1"])
def test_region_out_of_range_or_wrong_type_is_dropped(region):
    v = parse(f"defective: yes\ndefect_type: spur\nregion: {region}")
    assert v.defective is True and v.defect_type == "spur" and v.region is None


def test_json_region_types():
    assert parse('{"defective": true, "region": true}').region is None
    assert parse('{"defective": true, "region": [1]}').region is None
    assert parse('{"defective": true, "region": 2}').region == 2
    assert parse('{"defective": true, "region": 2}', n_regions=0).region is None


def test_description_is_bounded():
    v = parse("defective: yes\ndescription: " + "x" * 1000)
    assert len(v.description) == MAX_DESCRIPTION
