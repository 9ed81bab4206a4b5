"""What each command of the table does (``edge_inspector.commands``), bound by the daemon.

One handler per command, the same whatever the door (control socket, ``ctl``, MQTT):

- ``status``: the live state (:func:`live_status`), what the status CLI shows;
- ``pause`` / ``resume``: the station's own pause (every trigger still gets a decision: a NO-READ
  with reason ``paused`` and that reason's fail-safe action, without calling the model);
- ``reload``: the reload service rebuilds the stages from the file (as SIGHUP);
- ``recipe``: a reload with ``judge.recipe`` set to the named file of ``mqtt.recipes``; kept for
  later reloads once it is in force.
"""

from __future__ import annotations

import grp
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_inspector.commands import Access, Dispatcher, Reply, Request, refused
from edge_inspector.errors import StartupError
from edge_inspector.lifecycle import StationView
from edge_inspector.service.notify import assess
from edge_inspector.service.reload import Reloader

STARTED = "reload started; `edge-inspector status` shows the result"
BUSY = "a reload is already running, or the station is stopping"
MQTT_VIA = "mqtt"  # outputs/mqtt/commands.VIA
HTTP_VIA = "http"  # api/app.py


def live_status(station: StationView, stuck_after_s: float, started_wall: float,
                config_path: str | None) -> dict[str, Any]:
    """Everything the status CLI shows, from the running station."""
    snap = station.snapshot()
    health = assess(station, stuck_after_s)
    cfg, versions = station.cfg, station.versions
    return {
        "live": True,
        "pid": os.getpid(),
        "station": snap["station"],
        "state": health.state,
        "healthy": health.ok,
        "detail": health.detail,
        "paused": station.paused.is_set(),
        "paused_reason": station.paused_reason or None,
        "started": started_wall,
        "uptime_s": round(time.time() - started_wall, 1),
        "config": {"path": config_path, "fingerprint": versions.config},
        "model": versions.model,
        "model_version": versions.model_version,
        "judge": cfg.judge.kind,
        "judge_busy_s": round(station.inspector.judge.busy_for_s, 2),
        "recipe": str(cfg.judge.recipe) if cfg.judge.kind == "vlm" and cfg.judge.recipe else None,
        "recipe_version": versions.recipe_version,
        # one camera: its source's health; a multi-camera station: each camera's (or view set's)
        # with its own counters and why it dropped, if it did
        "cameras": [{**c["source"], "name": c["name"], "cameras": c["cameras"], "view_set": c["view_set"],
                     "dropped": c["dropped"], "counters": c["counters"]} for c in snap["cameras"]]
        if getattr(cfg, "multi_camera", False) else [snap["source"]],
        "links": snap["outputs"],
        "queue_depth": snap["queue_depth"],
        "counters": snap["counters"],
        "last": snap["last"],
        "time": snap["time"],
        **station.services.status(),
    }


def station_dispatcher(station: StationView, reloader: Reloader, recipes: dict[str, Path],
                       stuck_after_s: float, config_path: str | None,
                       access: Access | None = None) -> Dispatcher:
    started_wall = time.time()

    def status(_: Request) -> Reply:
        return Reply(True, {"status": live_status(station, stuck_after_s, started_wall, config_path)})

    def pause(req: Request) -> Reply:
        station.pause(req.via, req.value)
        return Reply(True, {"paused": True})

    def resume(req: Request) -> Reply:
        station.resume(req.via, req.value)
        return Reply(True, {"paused": False})

    def reload(req: Request) -> Reply:
        started = reloader.request(req.via)
        return Reply(True, detail=STARTED) if started else refused(BUSY)

    def recipe(req: Request) -> Reply:
        if req.value not in recipes:
            return refused(f"recipe {req.value!r} is not in mqtt.recipes "
                           f"({', '.join(sorted(recipes)) or 'none listed'})")
        if station.cfg.judge.kind != "vlm":
            return refused(f"the {station.cfg.judge.kind} judge has no recipe")
        started = reloader.request(f"{req.via} recipe {req.value}",
                                   {"judge.recipe": str(recipes[req.value])})
        return Reply(True, detail=STARTED) if started else refused(BUSY)

    return Dispatcher({"status": status, "pause": pause, "resume": resume, "reload": reload,
                       "recipe": recipe}, access)


def access_for(cfg: Any) -> Access:
    """Who may change the station, from the config: MQTT only the commands in ``mqtt.commands``, the
    HTTP API only those in ``api.commands``;
    the control socket only ``service.control.change_users``/``change_groups`` when set."""
    c = cfg.service.control

    def ids(names: list[str | int] | None, lookup: Callable[[str], int], what: str) -> frozenset[int] | None:
        if names is None:
            return None
        out = set()
        for n in names:
            try:
                out.add(n if isinstance(n, int) else int(n) if str(n).isdigit() else lookup(str(n)))
            except KeyError:
                raise StartupError(f"service.control.change_{what}: no {what[:-1]} {n!r} on this "
                                   "machine") from None
        return frozenset(out)

    return Access({MQTT_VIA: frozenset(cfg.mqtt.commands), HTTP_VIA: frozenset(cfg.api.commands)},
                  ids(c.change_users, lambda n: pwd.getpwnam(n).pw_uid, "users"),
                  ids(c.change_groups, lambda n: grp.getgrnam(n).gr_gid, "groups"))
