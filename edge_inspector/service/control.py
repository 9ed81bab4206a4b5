"""The local control socket: the station's command table for the status CLI, ``ctl`` and technicians.

A unix stream socket (mode 0660, group ``service.control.group``), one JSON object per line each way;
every command of the table (``edge_inspector.commands``) goes to the station's dispatcher:

    -> {"cmd": "status"}                    <- {"ok": true, "status": {...}}
    -> {"cmd": "pause", "value": "why"}     <- {"ok": true, "paused": true}
    -> {"cmd": "resume"}                    <- {"ok": true, "paused": false}
    -> {"cmd": "reload"}                    <- {"ok": true, "detail": "reload started; ..."}
    -> {"cmd": "recipe", "value": "pcb"}    <- {"ok": true, "detail": "reload started; ..."}
    -> anything else                        <- {"ok": false, "error": "..."}

A connection may send several requests. The service's one thread serves every connection
(selectors); a request line longer than 64 KiB or a client that stays silent for 30 s is
disconnected. A socket that cannot be bound (another daemon serves it) is logged and the station
runs without it (``status`` then reads the database).
"""

from __future__ import annotations

import errno
import grp
import json
import os
import selectors
import socket
import struct
import time
from pathlib import Path
from typing import Any

import structlog

from edge_inspector.commands import Dispatcher, Peer, Request
from edge_inspector.lifecycle import Service

log = structlog.get_logger(__name__)

MAX_LINE = 64 * 1024
IDLE_S = 30.0
MAX_CLIENTS = 32
VIA = "control socket"


def peer_of(conn: socket.socket) -> Peer | None:
    """The connecting process's uid, gid and supplementary groups (Linux SO_PEERCRED), or None."""
    try:
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
    except (OSError, AttributeError, struct.error):
        return None
    groups: tuple[int, ...] = ()
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            line = next((x for x in f if x.startswith("Groups:")), "Groups:")
        groups = tuple(int(g) for g in line.split()[1:] if g.isdigit())
    except OSError:
        pass
    return Peer(uid, gid, groups)


class ControlError(Exception):
    """The daemon could not be reached or answered with an error."""


class ControlServer(Service):
    """Serves the control socket beside the inspection loop: a communicator of the command table."""

    name = "control"
    stop_timeout_s = 10.0

    def __init__(self, path: Path, dispatcher: Dispatcher, group: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.dispatcher = dispatcher
        self.group = group
        self._sock: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self.requests = 0

    @property
    def serving(self) -> bool:
        return self._sock is not None

    # --- lifecycle ---------------------------------------------------------------------------

    def setup(self) -> None:
        try:
            self._sock = self._bind()
        except OSError as exc:
            log.error("control_socket_failed", path=str(self.path), error=str(exc),
                      detail="the station runs without its control socket: `status` reads the database")
            return
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ, None)
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

    def teardown(self) -> None:
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

    def run_loop(self) -> None:
        sel = self._sel
        if sel is None:
            return  # not bound: nothing to serve
        while not self.stopping:
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
        sel.register(conn, selectors.EVENT_READ, {"buf": b"", "seen": time.monotonic(), "peer": peer_of(conn)})

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
            if line.strip() and not self._reply(conn, self.handle_line(line, data.get("peer"))):
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

    def handle_line(self, line: bytes, peer: Peer | None = None) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return {"ok": False, "error": "not a JSON object"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected {"cmd": "<command>", "value": "<text>"}'}
        value = request.get("value", "")
        if value is None:
            value = ""
        self.requests += 1
        return self.dispatcher.dispatch(Request(request["cmd"], value, VIA, peer)).to_json()

    def status(self) -> dict[str, Any]:
        return {"path": str(self.path), "serving": self.serving, "requests": self.requests}


# --- client ----------------------------------------------------------------------------------


def request(path: Path, cmd: str, value: str = "", timeout: float = 3.0) -> dict[str, Any]:
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
        sock.sendall(json.dumps({"cmd": cmd, **({"value": value} if value else {})}).encode() + b"\n")
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
    try:
        answer = json.loads(buf.split(b"\n", 1)[0])
    except ValueError as exc:
        raise ControlError(f"{path}: the answer is not JSON") from exc
    if not answer.get("ok"):
        raise ControlError(answer.get("error") or answer.get("detail") or "refused")
    return answer
