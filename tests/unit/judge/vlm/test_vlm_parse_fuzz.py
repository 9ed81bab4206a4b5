"""Property tests of the answer parser (judge/vlm/parse.py): whatever the model writes, the vote is
valid only when the answer holds one clear decision, and a part never passes by accident
(issue 13, deliverable 3)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from edge_inspector.judge.vlm.parse import MAX_DESCRIPTION, parse_answer

TAXONOMY = ("open", "short", "mousebite", "spur", "spurious_copper", "pin_hole")
N_REGIONS = 3

# text a model might write: letters, digits, punctuation, the form's own words and symbols
_WORDS = st.sampled_from(["defective", "Defective", "is_defective", "yes", "no", "true", "false",
                          "not", "maybe", "region", "defect_type", "type", "description", "short",
                          "pin hole", "null", "{", "}", "[", "]", '"', ":", "=", ",", "\n", "```",
                          "```json", "**", "-", "#", " ", "1", "2", "7"])
_TEXT = st.one_of(st.text(max_size=300), st.lists(_WORDS, max_size=40).map("".join))


def check(vote) -> None:
    assert vote.defective in (True, False, None)
    assert vote.region is None or 1 <= vote.region <= N_REGIONS
    assert vote.defect_type is None or vote.defect_type in TAXONOMY
    assert len(vote.description) <= MAX_DESCRIPTION
    if not vote.defective:
        assert vote.defect_type is None and vote.region is None


@given(_TEXT)
def test_any_text_gives_a_vote_and_never_raises(text):
    vote = parse_answer(text, TAXONOMY, N_REGIONS)
    check(vote)
    assert vote.raw == text


@given(_TEXT)
def test_no_decision_key_no_decision(text):
    """A pass needs a decision: text without the word 'defective' is never a vote either way."""
    if "defective" not in text.lower():
        assert parse_answer(text, TAXONOMY, N_REGIONS).defective is None


_FORM = st.fixed_dictionaries({
    "defective": st.booleans(),
    "defect_type": st.sampled_from(TAXONOMY),
    "region": st.integers(1, N_REGIONS),
    "description": st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=80)
    .map(str.strip).filter(lambda d: ":" not in d and "=" not in d and "{" not in d and "`" not in d),
})


@given(_FORM, st.booleans())
def test_a_well_formed_answer_round_trips(form, as_json):
    if as_json:
        text = json.dumps(form)
    else:
        text = (f"defective: {'yes' if form['defective'] else 'no'}\ndefect_type: {form['defect_type']}\n"
                f"region: {form['region']}\ndescription: {form['description']}")
    vote = parse_answer(text, TAXONOMY, N_REGIONS)
    check(vote)
    assert vote.defective is form["defective"]
    if form["defective"]:
        assert (vote.defect_type, vote.region) == (form["defect_type"], form["region"])


@given(st.lists(st.text(st.characters(blacklist_characters=":=\n\r"), max_size=40)
                .filter(lambda s: "defective" not in s.lower()), max_size=6), st.data())
def test_two_different_decisions_are_an_invalid_vote(other_lines, data):
    lines = [*other_lines, "defective: yes", "defective: no"]
    order = data.draw(st.permutations(lines))
    assert parse_answer("\n".join(order), TAXONOMY, N_REGIONS).defective is None


@given(_FORM, st.integers(1, 400))
def test_a_truncated_answer_is_its_decision_or_invalid_never_the_opposite(form, cut):
    text = json.dumps(form)[:cut]
    vote = parse_answer(text, TAXONOMY, N_REGIONS)
    check(vote)
    assert vote.defective in (form["defective"], None)
