"""A view set's decision: one part seen by several cameras at one trigger, one decision from its views.

Any view REJECT -> REJECT (the first rejecting view's reason); else any view NO-READ -> NO-READ
(the first such view's reason); else PASS. The gate rejects when any view's action is REJECT (a
NO-READ's fail-safe action included), so a view never opens the gate that another view closed. The
part is late when any view was; its total time is the slowest view's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from edge_inspector.envelope import Action, Inspection, Outcome


def combine_views(part_camera: str, views: Sequence[Inspection]) -> Inspection:
    """The part's inspection from its views' (same part id, one per camera of the view set): the
    deciding view's frame, regions and verdict, renamed to the view set, with all views attached."""
    if not views:
        raise ValueError("a view set part needs at least one view")
    by = {o: [v for v in views if v.decision.outcome is o] for o in Outcome}
    pick = (by[Outcome.REJECT] or by[Outcome.NO_READ] or list(views))[0]
    d = pick.decision
    action = Action.REJECT if any(v.decision.action is Action.REJECT for v in views) else Action.PASS
    timings = dict(d.timings_ms)
    timings["total"] = max(v.decision.timings_ms.get("total", 0.0) for v in views)
    others = [f"{v.frame.camera} {v.decision.outcome}" for v in views if v is not pick]
    detail = f"view {pick.frame.camera}: {d.detail}" + (f" (also {', '.join(others)})" if others else "")
    decision = replace(d, action=action, detail=detail, timings_ms=timings,
                       decided_mono=max(v.decision.decided_mono for v in views),
                       late=any(v.decision.late for v in views))
    frame = replace(pick.frame, camera=part_camera, meta={**pick.frame.meta, "view": pick.frame.camera})
    return Inspection(frame, decision, pick.regions, pick.verdict, views=tuple(views))
