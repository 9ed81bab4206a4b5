"""Templated defect descriptions (seed 000's trick): by defect type, where the defect is and how big.

The judge's answer ends with a one-line description; a training example needs one. A person's note is
used when there is one; otherwise a template, picked per example by a hash so that the same example
always reads the same and the set does not repeat one sentence. Each description names the defect type
(its name with spaces), so a model learns the taxonomy's words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from edge_inspector.envelope import Box

PHRASES: dict[str, tuple[str, ...]] = {
    "open": ("a trace is broken and no longer connects", "a gap cuts through a copper trace",
             "the copper of a trace is interrupted"),
    "short": ("copper bridges two traces that should be apart", "two conductors are joined by stray copper",
              "a copper bridge connects neighbouring traces"),
    "mousebite": ("bites are missing from the edge of a trace", "the edge of a trace is notched",
                  "small notches eat into a trace's edge"),
    "spur": ("a thin copper spur sticks out of a trace", "a sliver of copper juts from a trace's edge",
             "a copper protrusion leaves a trace"),
    "spurious_copper": ("a blob of copper lies on bare substrate", "stray copper sits where none belongs",
                        "an island of copper on the substrate"),
    "pin_hole": ("a hole pierces the copper", "a small void opens in a copper area",
                 "the copper has a pin hole"),
}
GENERIC = ("the part shows this defect", "a defect of this type is visible", "this defect is present")
GOOD = ("no defect; the part matches the known-good reference.",
        "the part looks like the reference, no defect.", "nothing differs from a known-good part.")


def _pick(options: Sequence[str], key: str) -> str:
    return options[int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % len(options)]


def location(box: Box, shape: tuple[int, ...]) -> str:
    """Where the box's centre is, in a 3 x 3 grid of the frame: "at the top left", "in the centre"..."""
    h, w = shape[:2]
    cx, cy = (box.x1 + box.x2) / 2 / max(w, 1), (box.y1 + box.y2) / 2 / max(h, 1)
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    if not row and not col:
        return "in the centre"
    return f"at the {' '.join(p for p in (row, col) if p)}"


def size(box: Box, shape: tuple[int, ...]) -> str:
    """small / medium / large, by the box's longer side against the frame's shorter one."""
    side = max(box.width, box.height) / max(min(shape[:2]), 1)
    return "small" if side < 0.04 else "medium" if side < 0.12 else "large"


def describe(defect_type: str | None, box: Box | None, shape: tuple[int, ...], key: str) -> str:
    """One line for the answer's description. ``defect_type`` None: a good part."""
    if defect_type is None:
        return _pick(GOOD, key)
    name = defect_type.replace("_", " ")
    phrase = _pick(PHRASES.get(defect_type, GENERIC), key)
    if box is None:
        return f"{name}: {phrase}."
    return f"{size(box, shape)} {name} {location(box, shape)}: {phrase}."
