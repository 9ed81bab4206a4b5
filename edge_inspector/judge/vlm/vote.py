"""Self-consistency: count the parsed votes of one part (no torch here)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from edge_inspector.envelope import Vote


@dataclass(frozen=True, slots=True)
class Tally:
    n: int  # answers sampled
    n_valid: int  # answers that parsed to a decision
    n_defective: int  # valid answers that said defective
    defect_type: str | None  # the most voted type among the defective answers
    region: int | None  # the most voted region among the defective answers

    @property
    def n_invalid(self) -> int:
        return self.n - self.n_valid

    @property
    def share(self) -> float | None:
        """Share of defective among the valid votes; None without valid votes."""
        return self.n_defective / self.n_valid if self.n_valid else None

    @property
    def smoothed_share(self) -> float:
        """(defective + 1/2) / (valid + 1): never 0 or 1, so that its logit is finite."""
        return (self.n_defective + 0.5) / (self.n_valid + 1)


def _majority(values: Sequence, order: Sequence) -> object | None:
    """The most frequent value; a tie goes to the value earliest in ``order`` (then the smallest)."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = [v for v, c in counts.items() if c == top]
    rank = {v: i for i, v in enumerate(order)}
    return min(tied, key=lambda v: (rank.get(v, len(rank)), v))


def tally(votes: Sequence[Vote], taxonomy: Sequence[str]) -> Tally:
    """Count the votes. Invalid votes count toward ``n`` only: they never make a pass."""
    valid = [v for v in votes if v.valid]
    defective = [v for v in valid if v.defective]
    return Tally(n=len(votes), n_valid=len(valid), n_defective=len(defective),
                 defect_type=_majority([v.defect_type for v in defective], taxonomy),  # type: ignore[arg-type]
                 region=_majority([v.region for v in defective], ()))  # type: ignore[arg-type]
