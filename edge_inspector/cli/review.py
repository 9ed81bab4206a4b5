"""``edge-inspector review list|label``: the parts worth a person's look, and a person's label of one.

``list`` prints the review queue (``edge_inspector.review.queue``: NO-READs, rejects, uncertain passes,
an audit sample of confident passes; labelled parts left out), ``label`` stores a label (good /
defective, defect type, note) with who (the OS user, or ``--reviewer``) and when. An unknown part id,
or a defect type the recipe does not know, exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path

import structlog

from edge_inspector.cli.common import add_config_options, config_from
from edge_inspector.errors import EdgeInspectorError

UNKNOWN_PART_EXIT = 2


class ReviewError(EdgeInspectorError):
    """Bad input to a review command: an unknown part, a label or type that is not one."""

    exit_code = UNKNOWN_PART_EXIT


def register(sub) -> None:
    p = sub.add_parser("review", help="the review queue, and labels of inspections")
    rsub = p.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    lp = rsub.add_parser("list", help="the parts worth a look, most useful first (labelled ones left out)")
    add_config_options(lp)
    lp.add_argument("--db", metavar="PATH", help="read this database instead of the config's")
    lp.add_argument("--json", action="store_true", help="print JSON")
    lp.add_argument("--limit", "-n", type=int, default=20, help="how many parts (default 20; 0: all)")
    lp.add_argument("--low-confidence", type=float, default=None, metavar="C",
                    help="a pass under this confidence is uncertain (default: images.review_confidence, 0.9)")
    lp.add_argument("--split", type=float, default=None, metavar="S",
                    help="a pass whose defective vote share is within [S, 1-S] is split "
                    "(default: images.review_split, 0.2)")
    lp.add_argument("--audit-share", type=float, default=None, metavar="F",
                    help="share of confident passes sampled for audit, by a hash of the part id "
                    "(default: images.audit_share, 0.05)")
    lp.set_defaults(func=cmd_list)

    bp = rsub.add_parser("label", help="store a person's label of one inspection")
    add_config_options(bp)
    bp.add_argument("part_id", metavar="PART_ID")
    bp.add_argument("--db", metavar="PATH", help="write this database instead of the config's")
    bp.add_argument("--label", required=True, choices=["good", "defective"], help="what the part is")
    bp.add_argument("--type", dest="defect_type", metavar="TYPE",
                    help="the defect type (with --label defective), one of the recipe's")
    bp.add_argument("--note", default="", metavar="TEXT", help="anything else")
    bp.add_argument("--reviewer", default=None, metavar="NAME", help="who (default: the OS user)")
    bp.add_argument("--json", action="store_true", help="print the stored label as JSON")
    bp.set_defaults(func=cmd_label)


def _db_path(args: argparse.Namespace):
    if args.db:
        return Path(args.db), None
    cfg = config_from(args)
    return cfg.db_path, cfg


def cmd_list(args: argparse.Namespace) -> int:
    from edge_inspector.outputs.store import connect
    from edge_inspector.review.queue import QueueSettings, build_queue

    path, cfg = _db_path(args)
    images = cfg.images if cfg is not None else None  # the passes whose images the station kept
    base = QueueSettings() if images is None else QueueSettings(
        images.review_confidence, images.review_split, images.audit_share)
    try:
        settings = QueueSettings(base.low_confidence if args.low_confidence is None else args.low_confidence,
                                 base.split if args.split is None else args.split,
                                 base.audit_share if args.audit_share is None else args.audit_share)
    except ValueError as exc:
        raise ReviewError(str(exc)) from None
    if not path.exists():
        raise EdgeInspectorError(f"no database at {path}: has the station run yet?")
    db = connect(path, readonly=True)
    try:
        out = build_queue(db, settings, args.limit if args.limit > 0 else None)
    finally:
        db.conn.close()
    out = {"database": str(path), **out}
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        render(out)
    return 0


def render(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=140)
    c = out["counts"]
    console.print(f"[bold]review queue[/bold]  {out['database']}   NO-READ {c['no_read']}   reject "
                  f"{c['reject']}   uncertain {c['uncertain']}   audit {c['audit']}   "
                  f"(labelled {out['labelled']})")
    table = Table()
    for col in ("why", "part", "time", "decision", "reason", "P(def)", "conf", "votes", "image"):
        table.add_column(col)

    def num(v):
        return "-" if v is None else f"{v:.2f}"

    for r in out["queue"]:
        t = r.get("trigger_time")
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(t)) if t else ""
        share = r.get("vote_share")
        votes = "-" if share is None else f"{share:.2f} of {r.get('valid_votes') or 0}"
        table.add_row(r["why"], r["part_id"], when, r["outcome"], r["reason"] or "",
                      num(r.get("p_defective")), num(r.get("confidence")), votes,
                      "yes" if r.get("image_path") else "")
    console.print(table)


log = structlog.get_logger("edge_inspector.review")


def _taxonomy(cfg) -> tuple[str, ...] | None:
    """The defect types of the judge's recipe, when the judge has one (VLM, served VLM)."""
    recipe = getattr(getattr(cfg, "judge", None), "recipe", None)
    if recipe is None:
        return None
    from edge_inspector.recipe import load_recipe

    return load_recipe(recipe).defect_names


def cmd_label(args: argparse.Namespace) -> int:
    from edge_inspector.outputs.store import connect
    from edge_inspector.review import labels

    path, cfg = _db_path(args)
    args.defect_type = labels.normal_type(args.defect_type)
    if args.defect_type and args.label != "defective":
        raise ReviewError("--type goes with --label defective only")
    names = _taxonomy(cfg) if cfg is not None else None
    if args.defect_type and names is not None and args.defect_type not in names:
        raise ReviewError(f"--type {args.defect_type}: not a defect type of the recipe "
                          f"(one of {', '.join(names)})")
    if not path.exists():
        raise EdgeInspectorError(f"no database at {path}: has the station run yet?")
    db = connect(path)
    try:
        labels.migrate(db, path)
        reviewer = args.reviewer if args.reviewer is not None else _os_user()
        try:
            row = labels.add_label(db, args.part_id, args.label, args.defect_type, reviewer, args.note,
                                   via="cli")
        except labels.UnknownPart:
            raise ReviewError(f"no inspection with part id {args.part_id!r} in {path}") from None
        except ValueError as exc:
            raise ReviewError(str(exc)) from None
    finally:
        db.conn.close()
    if row["label"] == "defective" and not row["defect_type"]:
        # kept (a person's verdict), but a training example needs the taxonomy's answer form
        log.warning("label_without_type", part_id=row["part_id"],
                    why="dataset export skips a defective label without a defect type: label it "
                        "again with --type" + (f" (one of {', '.join(names)})" if names else ""))
    if args.json:
        sys.stdout.write(json.dumps(row) + "\n")
    else:
        kind = f" ({row['defect_type']})" if row["defect_type"] else ""
        sys.stdout.write(f"{row['part_id']}: labelled {row['label']}{kind} by {row['reviewer'] or '?'}\n")
    return 0


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a container)
        return ""
