"""Voting: shares over valid votes, ties, invalid votes."""

from __future__ import annotations

from edge_inspector.envelope import Vote
from edge_inspector.judge.vlm.vote import tally

TAXONOMY = ("open", "short", "spur")
YES = Vote(defective=True)
NO = Vote(defective=False)
BAD = Vote(defective=None, raw="garbage")


def test_share_counts_valid_votes_only():
    t = tally([YES, YES, NO, BAD, BAD], TAXONOMY)
    assert (t.n, t.n_valid, t.n_defective, t.n_invalid) == (5, 3, 2, 2)
    assert t.share == 2 / 3


def test_no_valid_vote_has_no_share():
    t = tally([BAD, BAD], TAXONOMY)
    assert t.share is None and t.n_invalid == 2
    assert 0 < t.smoothed_share < 1


def test_smoothed_share_never_reaches_zero_or_one():
    assert 0.5 < tally([YES] * 5, TAXONOMY).smoothed_share < 1
    assert 0 < tally([NO] * 5, TAXONOMY).smoothed_share < 0.5


def test_tied_decision_is_an_even_share():
    assert tally([YES, NO, YES, NO], TAXONOMY).share == 0.5


def test_defect_type_majority_among_defective_votes():
    votes = [Vote(True, "spur"), Vote(True, "spur"), Vote(True, "short"), Vote(False, None), BAD]
    assert tally(votes, TAXONOMY).defect_type == "spur"


def test_defect_type_tie_goes_to_taxonomy_order():
    votes = [Vote(True, "spur"), Vote(True, "short"), Vote(True, "spur"), Vote(True, "short")]
    assert tally(votes, TAXONOMY).defect_type == "short"  # short comes before spur in the taxonomy


def test_region_majority_and_tie():
    assert tally([Vote(True, region=2), Vote(True, region=2), Vote(True, region=1)], TAXONOMY).region == 2
    assert tally([Vote(True, region=2), Vote(True, region=1)], TAXONOMY).region == 1
    assert tally([Vote(True), Vote(True)], TAXONOMY).region is None
