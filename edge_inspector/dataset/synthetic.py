"""Synthetic examples (seed 000's trick): boards of the synthetic generator (``synth/pcb.py``), half
known-good, half with one defect of each of the recipe's types in turn, each with a templated
description (``describe.py``: type, location, size).

A synthetic board is its own product: its reference is the design's golden board, given as the
part's reference (the prompt's suffix, as ``inspect --reference`` does), and the regions are the
generator's ground-truth boxes (score 2.0: twice the tolerance) zoomed as the regions stage would.
Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator

from edge_inspector.dataset.describe import describe
from edge_inspector.dataset.export import Context, Example
from edge_inspector.envelope import Box
from edge_inspector.regions.zoom import zoom
from edge_inspector.synth.pcb import DEFECT_KINDS, BoardDesign, make_board, reference_board

BOX_SCORE = 2.0


def synthetic_examples(n: int, ctx: Context, seed: int = 0, design_seed: int = 7) -> Iterator[Example]:
    design = BoardDesign(design_seed)
    reference = reference_board(design).image
    kinds = [k for k in DEFECT_KINDS if k in ctx.recipe.defect_names]
    made = 0
    board_seed = 50_000_000 + seed * 1_000_003
    while made < n:
        ex_id = f"synthetic-{seed}-{made:06d}"
        defective = bool(kinds) and made % 2 == 1
        kind = kinds[(made // 2) % len(kinds)] if defective else None
        board_seed += 1
        board = make_board(design, board_seed, [kind] if kind else 0)
        if defective and not board.defects:
            continue  # the defect left the field of view in the re-capture: another board
        boxes = tuple(Box(*d.box, score=BOX_SCORE) for d in board.defects)
        crops = zoom(board.image, boxes, ctx.zoom) if boxes else ()
        region = 1 if defective and crops and ctx.limits.max_regions > 0 else None
        text = describe(kind, boxes[0] if boxes else None, board.image.shape, ex_id)
        yield Example(ex_id, "defective" if defective else "good", kind, board.image, boxes, tuple(crops),
                      region, text, part_reference=reference, source="synthetic")
        made += 1
