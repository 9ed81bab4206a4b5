"""``edge-inspector status``: totals, reject rate and the last decisions, from SQLite."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge_inspector.cli.common import add_config_options
from edge_inspector.errors import EdgeInspectorError


def register(sub) -> None:
    p = sub.add_parser("status", help="the station's totals and last decisions")
    add_config_options(p)
    p.add_argument("--db", metavar="PATH", help="read this database instead of the config's")
    p.add_argument("-n", "--last", type=int, default=10, help="how many recent decisions (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)


def gather(db_path: Path, last: int) -> dict:
    from edge_inspector.outputs.store import connect, recent, totals

    if not db_path.exists():
        raise EdgeInspectorError(f"no database at {db_path}: has the station run yet?")
    db = connect(db_path, readonly=True)
    try:
        rows = recent(db, last)
        for r in rows:
            r["boxes"] = len(json.loads(r["boxes"] or "[]"))
        return {"database": str(db_path), "totals": totals(db), "last": rows}
    finally:
        db.conn.close()


def render(status: dict, out=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout, width=120)
    t = status["totals"]
    console.print(f"[bold]edge-inspector[/bold]  {status['database']}")
    console.print(f"parts {t['parts']}   PASS {t['PASS']}   REJECT {t['REJECT']}   "
                  f"NO-READ {t['NO-READ']}   reject rate {t['reject_rate'] * 100:.1f} %")
    table = Table(title=f"last {len(status['last'])} decisions")
    for col in ("time", "part", "camera", "decision", "reason", "score", "boxes", "ms"):
        table.add_column(col)
    colors = {"PASS": "green", "REJECT": "red", "NO-READ": "yellow"}
    for r in status["last"]:
        when = time.strftime("%H:%M:%S", time.localtime(r["trigger_time"])) if r["trigger_time"] else ""
        score = f"{r['score']:.2f}" if r["score"] is not None else "-"
        ms = f"{r['t_total_ms']:.1f}" if r["t_total_ms"] is not None else "-"
        c = colors.get(r["outcome"], "white")
        table.add_row(when, r["part_id"], r["camera"], f"[{c}]{r['outcome']}[/{c}]", r["reason"], score,
                      str(r["boxes"]), ms)
    console.print(table)


def cmd_status(args: argparse.Namespace) -> int:
    if args.db:
        db_path = Path(args.db)
    else:
        from edge_inspector.config import load_config

        db_path = load_config(args.config, args.overrides).db_path
    status = gather(db_path, args.last)
    if args.json:
        sys.stdout.write(json.dumps(status, indent=2, default=str) + "\n")
    else:
        render(status)
    return 0
