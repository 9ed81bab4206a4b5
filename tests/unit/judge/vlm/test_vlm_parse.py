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


# -- what real Qwen answers look like (issue 14: "defective: none" made 5 of 6 demo parts NO-READ) --

@pytest.mark.parametrize("text", [
    "defective: none\ndefect_type: none\nregion: none\ndescription: the part looks like the reference",
    "defective: None",
    "defective: None.",
    "defective: none found",
    "defective: nothing",
    "defective: No.",
    "defective: **No**",
    "defective: no defects found",
    "defective: non-defective",
    "defective: Non defective",
    "defective: defect-free",
    "defective: normal",
    'defective: {"defective": "None"}',
    '```json\n{"Defective": "none", "defect_type": null}\n```',
    "**Defective**: No\n**Defect type**: None",
])
def test_a_decision_of_none_or_its_siblings_is_a_pass(text):
    v = parse(text)
    assert v.defective is False and v.valid
    assert (v.defect_type, v.region) == (None, None)


@pytest.mark.parametrize("text", [
    "**Defective**: Yes\n**Defect type**: Short\n**Region**: 1",
    "- **defective:** yes\n- **defect_type:** short\n- **region:** 1",
    "defective: Yes\n\n**Defect type:** Short\n\n**Region:** 1",
    "### Defective: YES\n### Defect_Type: SHORT\n### Region: 1",
    "defective: yes\ndefect_type: Short circuit\nregion: Region 1",
    "defective: yes\nDefect Type: short (a copper bridge)\nregion: #1",
    "defective: yes\ndefect_type: `short`.\nregion: `1`",
    "defective: {'defective': 'yes', 'defect_type': 'short', 'region': 1}",
    'defective: "yes"\n"defect_type": "short",\n"region": "1"',
])
def test_markdown_and_json_ish_forms(text):
    v = parse(text)
    assert (v.defective, v.defect_type, v.region) == (True, "short", 1)


def test_the_longest_taxonomy_name_wins():
    assert parse("defective: yes\ndefect_type: spurious copper").defect_type == "spurious_copper"
    assert parse("defective: yes\ndefect_type: spur (a sliver)").defect_type == "spur"
    assert parse("defective: yes\ndefect_type: shortage").defect_type is None  # a word, not a prefix


@pytest.mark.parametrize("text", [
    "defective:\ndefective: no\ndefect_type: none",  # the model repeats the pre-filled key
    "defective: defective: no",
    "defective: No\ndefect_type: none\ndefective: no",  # the same decision twice, spelled apart
])
def test_a_repeated_key_is_read_for_its_value(text):
    assert parse(text).defective is False


@pytest.mark.parametrize("text", ["defective:\n Yes\ndefect_type: short", "defective:\n\n**YES**"])
def test_the_value_on_the_line_after_the_pre_filled_key(text):
    assert parse(text).defective is True


@pytest.mark.parametrize("text", [
    "defective: n/a",  # not a decision: invalid, not a pass
    "defective: N/A\ndefect_type: none",
    "defective: n",  # truncated inside "no"
    "defective: Yes\ndefective: No.",
    "defective: none\ndefective: yes",
    "defective: defect",
    "defective: yes or no",  # the prompt's template echoed back
    "defective: yes/no",
    "defective: [Yes/No]",
    "defective: no or yes",
])
def test_still_invalid(text):
    assert parse(text).defective is None
