"""``edge-inspector status``: the station as it is now, or its totals and last decisions from SQLite.

While the daemon runs, the status comes from its control socket (state, camera, model, recipe, links,
queue, counters, last decisions); when it does not, from the database, marked "daemon not running".
``--watch`` refreshes in place until Ctrl-C.
"""

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
    p.add_argument("--watch", "-w", nargs="?", type=float, const=1.0, default=None, metavar="SECONDS",
                   help="refresh in place every SECONDS (default 1) until Ctrl-C")
    p.add_argument("--socket", metavar="PATH", help="the daemon's control socket instead of the config's")
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

    console = Console(file=out or sys.stdout, width=120)
    for item in (live_view(status) if status.get("live") else db_view(status)):
        console.print(item)


def db_view(status: dict) -> list:
    t = status["totals"]
    head = [f"[bold]edge-inspector[/bold]  {status['database']}"]
    if status.get("daemon"):
        head.append(f"[yellow]daemon not running[/yellow]: totals from the database ({status['daemon']})")
    head.append(f"parts {t['parts']}   PASS {t['PASS']}   REJECT {t['REJECT']}   "
                f"NO-READ {t['NO-READ']}   reject rate {t['reject_rate'] * 100:.1f} %")
    if len(t.get("cameras") or {}) > 1:
        for name, c in t["cameras"].items():
            head.append(f"camera   {name}: parts {c['parts']}   PASS {c['PASS']}   REJECT {c['REJECT']}   "
                        f"NO-READ {c['NO-READ']}")
    return [*head, decisions_table(status["last"])]


GOOD_LINK_STATES = ("ok", "ready", "online", "connected")  # store, PLC bridge, Modbus, MQTT
STATE_STYLE = {"running": "bold green", "idle": "bold green", "starting": "bold cyan",
               "paused": "bold yellow", "stopping": "bold yellow", "stuck": "bold white on red"}


def _ago(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600:02d}h" if s >= 86400 else (
        f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s")


def live_view(st: dict) -> list:
    """What a technician sees while the daemon runs."""
    from rich.markup import escape

    state = st["state"]
    style = STATE_STYLE.get(state, "bold")
    out = [f"[bold]edge-inspector[/bold]  station {escape(st['station'])}   "
           f"[{style}] {state.upper()} [/{style}]   pid {st['pid']}   up {_ago(st['uptime_s'])}"]
    if st.get("detail"):
        out.append(f"  [{style}]{escape(st['detail'])}[/{style}]")
    for cam in st.get("cameras") or []:
        cam_state = cam.get("state", "?")
        color = "green" if cam_state in ("online", "ok") else "red"
        extra = "  ".join(f"{k} {v}" for k, v in cam.items()
                          if k not in ("name", "state", "counters", "cameras", "view_set", "views", "dropped"))
        if "counters" in cam:  # a multi-camera station: each camera's own parts
            c = cam["counters"]
            extra = (f"parts {c.get('decisions', 0)}  PASS {c.get('PASS', 0)}  REJECT {c.get('REJECT', 0)}  "
                     f"NO-READ {c.get('NO-READ', 0)}" + (f"  views {','.join(cam['cameras'])}"
                                                          if cam.get("view_set") else "") + f"  {extra}")
        if cam.get("dropped"):
            color, extra = "red", f"DROPPED ({cam['dropped']}): its parts are NO-READs  {extra}"
        out.append(f"camera   {escape(str(cam.get('name')))}  [{color}]{cam_state}[/{color}]  {escape(extra)}")
    version = f" (version {escape(st['model_version'])})" if st.get("model_version") else ""
    out.append(f"model    {escape(st['model'])}{version}   judge {st['judge']}   "
               f"recipe {escape(st.get('recipe') or '-')}")
    cfg = st.get("config") or {}
    reload = st.get("reload") or {}
    line = f"config   {escape(str(cfg.get('path') or '-'))} ({cfg.get('fingerprint')})"
    if reload.get("state") not in (None, "none"):
        when = time.strftime("%H:%M:%S", time.localtime(reload["at"])) if reload.get("at") else ""
        color = "red" if reload["state"] == "refused" else "green"
        line += f"   last reload [{color}]{reload['state']}[/{color}] {when}"
    out.append(line)
    if reload.get("state") == "refused" and reload.get("error"):
        out.append(f"  [red]reload refused:[/red] {escape(reload['error'].splitlines()[-1].strip())}")
    links = []
    for link in st.get("links") or []:
        ok = link.get("state") in GOOD_LINK_STATES and not link.get("failures")
        color = "green" if ok else "red"
        extra = f", {link['failures']} failures" if link.get("failures") else ""
        links.append(f"{escape(link.get('name', '?'))} [{color}]{link.get('state', '?')}[/{color}]{extra}")
    out.append("links    " + ("   ".join(links) or "-"))
    out.append(f"queue    {st['queue_depth']} waiting   judge busy {st.get('judge_busy_s', 0):.1f} s"
               + ("   [bold yellow]PAUSED: every trigger is a NO-READ (paused)[/bold yellow]"
                  if st.get("paused") else ""))
    c = st["counters"]
    parts = c.get("decisions", 0)
    rate = c.get("REJECT", 0) / parts * 100 if parts else 0.0
    out.append(f"parts {parts}   PASS {c.get('PASS', 0)}   REJECT {c.get('REJECT', 0)}   "
               f"NO-READ {c.get('NO-READ', 0)}   reject rate {rate:.1f} %   (since start; triggers "
               f"{c.get('triggers', 0)}, overflow {c.get('overflow', 0)})")
    ret = st.get("retention")
    if ret:
        color = "red" if ret.get("disk_low") else "green"
        free = ret.get("disk_free_mb")
        out.append(f"disk     [{color}]{'-' if free is None else f'{free:.0f} MB'} free[/{color}]"
                   f"{'  [red]NEARLY FULL: reject images not saved[/red]' if ret.get('disk_low') else ''}"
                   f"   images saved {ret.get('images_saved', 0)}, skipped (disk low) "
                   f"{ret.get('images_skipped_disk_low', 0)}")
    out.append(decisions_table(list(reversed(st.get("last") or []))))
    return out


def decisions_table(last: list[dict]):
    from rich.table import Table

    table = Table(title=f"last {len(last)} decisions")
    for col in ("time", "part", "camera", "decision", "reason", "score", "boxes", "ms"):
        table.add_column(col)
    colors = {"PASS": "green", "REJECT": "red", "NO-READ": "yellow"}
    for r in last:
        when = time.strftime("%H:%M:%S", time.localtime(r["trigger_time"])) if r.get("trigger_time") else ""
        score = f"{r['score']:.2f}" if r.get("score") is not None else "-"
        ms = f"{r['t_total_ms']:.1f}" if r.get("t_total_ms") is not None else "-"
        c = colors.get(r["outcome"], "white")
        table.add_row(when, r["part_id"], r.get("camera") or "", f"[{c}]{r['outcome']}[/{c}]", r["reason"],
                      score, str(r.get("boxes", "-")), ms)
    return table


def current(args: argparse.Namespace) -> dict:
    """The live status from the daemon's control socket; from the database when it does not answer."""
    from edge_inspector.service.control import ControlError, request

    db_path, socket_path = Path(args.db) if args.db else None, Path(args.socket) if args.socket else None
    if db_path is None or socket_path is None:
        from edge_inspector.config import load_config
        from edge_inspector.service.config import control_socket_path

        cfg = load_config(args.config, args.overrides)
        db_path = db_path or cfg.db_path
        socket_path = socket_path or (None if args.db else control_socket_path(cfg))
    why = None  # --db alone: the database was asked for, not the daemon
    if socket_path is not None:
        try:
            live = request(socket_path, "status")["status"]
            live["last"] = live["last"][-args.last:] if args.last > 0 else []
            return live
        except ControlError as exc:
            why = str(exc)
    return {**gather(db_path, args.last), "live": False, "daemon": why}


def watch(args: argparse.Namespace) -> int:
    from rich.console import Console, Group
    from rich.live import Live

    console = Console()

    def view():
        try:
            status = current(args)
        except EdgeInspectorError as exc:
            return Group(f"[bold]edge-inspector[/bold]  [yellow]{exc}[/yellow]",
                         time.strftime("%H:%M:%S  (Ctrl-C to quit)"))
        items = live_view(status) if status.get("live") else db_view(status)
        return Group(*items, time.strftime("%H:%M:%S") + f"  refreshed every {args.watch:g} s  (Ctrl-C to quit)")

    try:
        with Live(view(), console=console, auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(args.watch)
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch is not None:
        if args.watch <= 0:
            raise EdgeInspectorError("--watch needs a positive number of seconds")
        return watch(args)
    status = current(args)
    if args.json:
        sys.stdout.write(json.dumps(status, indent=2, default=str) + "\n")
    else:
        render(status)
    return 0
