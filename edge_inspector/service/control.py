"""The local control socket: live state and a few commands, for the status CLI and technicians.

A unix stream socket (mode 0660, group ``service.control.group``), one JSON object per line each way:

    -> {"cmd": "status"}           <- {"ok": true, "status": {...}}
    -> {"cmd": "pause"}            <- {"ok": true, "paused": true}
    -> {"cmd": "resume"}           <- {"ok": true, "paused": false}
    -> {"cmd": "reload"}           <- {"ok": true, "detail": "reload started"}   (result in status)
    -> anything else               <- {"ok": false, "error": "..."}

A connection may send several requests. One thread serves every connection (selectors); a request
line longer than 64 KiB or a client that stays silent for 30 s is disconnected. A paused station
still gives every trigger a decision: a NO-READ with reason ``paused`` and that reason's fail-safe
action (REJECT unless configured), without calling the model.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector.daemon import Service
from edge_inspector.service.notify import assess

if TYPE_CHECKING:
    from edge_inspector.daemon import Station

log = structlog.get_logger(__name__)

MAX_LINE = 64 * 1024
IDLE_S = 30.0
MAX_CLIENTS = 32


class ControlError(Exception):
    """The daemon could not be reached or answered with an error."""


def live_status(station: Station, stuck_after_s: float, started_wall: float) -> dict[str, Any]:
    """Everything the status CLI shows, from the running station."""
    snap = station.snapshot()
    health = assess(station, stuck_after_s)
    cfg = station.cfg
    recipe = getattr(cfg.judge, "recipe", None)
    out: dict[str, Any] = {
        "live": True,
        "pid": os.getpid(),
        "station": snap["station"],
        "state": health.state,
        "healthy": health.ok,
        "detail": health.detail,
        "paused": station.paused.is_set(),
        "started": started_wall,
        "uptime_s": round(time.time() - started_wall, 1),
        "config": {"path": station.config_path, "fingerprint": cfg.fingerprint()},
        "model": station.inspector.model_hash,
        "judge": cfg.judge.kind,
        "judge_busy_s": round(station.inspector.judge.busy_for_s, 2),
        "recipe": str(recipe) if recipe else None,
        "cameras": [snap["source"]],
        "links": snap["outputs"],
        "queue_depth": snap["queue_depth"],
        "counters": snap["counters"],
        "last": snap["last"],
        "time": snap["time"],
    }
    for service in station.services:
        extra = getattr(service, "status", None)
        if callable(extra):
            try:
                out[service.name] = extra()
            except Exception as exc:  # noqa: BLE001 - one service's status must not break the rest
                out[service.name] = {"error": str(exc)}
    return out


class ControlServer(Service):
    """Serves the control socket beside the inspection loop."""

    name = "control"

    def __init__(self, path: Path, group: str | None = None, stuck_after_s: float = 10.0) -> None:
        self.path = Path(path)
        self.group = group
        self.stuck_after_s = stuck_after_s
        self._station: Station | None = None
        self._sock: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._started_wall = time.time()
        self.requests = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, station: Station) -> None:
        self._station = station
        self._started_wall = time.time()
        try:
            self._sock = self._bind()
        except OSError as exc:
            log.error("control_socket_failed", path=str(self.path), error=str(exc),
                      detail="the station runs without its control socket: `status` reads the database")
            return
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        log.info("control_socket", path=str(self.path), group=self.group)

    def _bind(self) -> socket.socket:
        if len(os.fsencode(self.path)) >= 108:
            raise OSError(errno.ENAMETOOLONG, f"socket path longer than 107 bytes: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # stale: left by a daemon that was killed
            else:
                raise OSError(errno.EADDRINUSE, f"another daemon serves {self.path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            if self.group:
                try:
                    os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
                except (KeyError, PermissionError) as exc:
                    log.error("control_socket_group", group=self.group, error=str(exc) or "no such group",
                              detail="the socket keeps the daemon's group")
            sock.listen(8)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sel is not None:
            for key in list(self._sel.get_map().values()):
                key.fileobj.close()
            self._sel.close()
            self._sel = None
        if self._sock is not None:
            self._sock = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    # --- serving -----------------------------------------------------------------------------

    def _serve(self) -> None:
        sel = self._sel
        assert sel is not None
        while not self._done.is_set():
            now = time.monotonic()
            for key, _ in sel.select(0.2):
                if key.data is None:
                    self._accept(sel)
                else:
                    self._read(sel, key.fileobj, key.data)
            for key in list(sel.get_map().values()):
                if key.data is not None and now - key.data["seen"] > IDLE_S:
                    self._drop(sel, key.fileobj)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(sel.get_map()) > MAX_CLIENTS:
            conn.close()
            return
        conn.settimeout(2.0)  # bounded sends; reads only happen when select says there is data
        sel.register(conn, selectors.EVENT_READ, {"buf": b"", "seen": time.monotonic()})

    def _drop(self, sel: selectors.BaseSelector, conn) -> None:
        sel.unregister(conn)
        conn.close()

    def _read(self, sel: selectors.BaseSelector, conn, data: dict) -> None:
        try:
            chunk = conn.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(sel, conn)
            return
        data["seen"] = time.monotonic()
        data["buf"] += chunk
        while b"\n" in data["buf"]:
            line, data["buf"] = data["buf"].split(b"\n", 1)
            if line.strip() and not self._reply(conn, self.handle_line(line)):
                self._drop(sel, conn)
                return
        if len(data["buf"]) > MAX_LINE:
            self._reply(conn, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
            self._drop(sel, conn)

    def _reply(self, conn, answer: dict[str, Any]) -> bool:
        try:
            conn.sendall(json.dumps(answer, default=str).encode() + b"\n")
            return True
        except OSError:
            return False

    def handle_line(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "not a JSON object"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected {"cmd": "status" | "pause" | "resume" | "reload"}'}
        self.requests += 1
        return self.handle(request["cmd"])

    def handle(self, cmd: str) -> dict[str, Any]:
        station = self._station
        assert station is not None
        try:
            if cmd == "status":
                return {"ok": True, "status": live_status(station, self.stuck_after_s, self._started_wall)}
            if cmd == "pause":
                if not station.paused.is_set():
                    station.paused.set()
                    log.warning("station_paused", via="control socket",
                                detail="every trigger is a NO-READ (reason paused) until resume")
                return {"ok": True, "paused": True}
            if cmd == "resume":
                if station.paused.is_set():
                    station.paused.clear()
                    log.info("station_resumed", via="control socket")
                return {"ok": True, "paused": False}
            if cmd == "reload":
                started = station.request_reload("control socket")
                return {"ok": started, "detail": "reload started; `edge-inspector status` shows the result"
                        if started else "a reload is already running or reloading is unavailable"}
        except Exception as exc:  # noqa: BLE001 - a bad request must never reach the station
            log.error("control_request_failed", cmd=cmd, error=f"{type(exc).__name__}: {exc}")
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": False, "error": f"unknown command {cmd!r} (status, pause, resume, reload)"}


# --- client ----------------------------------------------------------------------------------


def request(path: Path, cmd: str, timeout: float = 3.0) -> dict[str, Any]:
    """Send one command to the daemon at ``path``; its answer. Raises ControlError when no daemon
    listens there (FileNotFoundError / ConnectionRefusedError inside) or it answers with an error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlError(f"no one listens on {path}") from exc
        except PermissionError as exc:
            raise ControlError(f"no permission to use {path}: add yourself to the socket's group "
                               "(service.control.group) and log in again") from exc
        sock.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError("the daemon closed the connection without an answer")
            buf += chunk
    except TimeoutError as exc:
        raise ControlError(f"the daemon did not answer within {timeout:g} s") from exc
    except OSError as exc:
        raise ControlError(f"{path}: {exc}") from exc
    finally:
        sock.close()
    answer = json.loads(buf.split(b"\n", 1)[0])
    if not answer.get("ok"):
        raise ControlError(answer.get("error") or answer.get("detail") or "refused")
    return answer
