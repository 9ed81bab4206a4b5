#!/usr/bin/env python3
"""Soak the real station under faults on a schedule and check its invariants (issue 13).

    python tools/soak.py [--parts 300] [--cycles 2] [--interval-ms 20] [--seed 1] [--no-bridge]
                         [--faults sigkill,broker,...]

The real daemon (``python -m edge_inspector run``) as a subprocess replaying a folder of boards in a
loop (``capture.kind: folder``) that also holds hostile files; a real Mosquitto on a free loopback
port (``tools/starters.py``); the SQLite store; and, where simavr and the AVR toolchain are built
(``make -C firmware_bridge all sim``), the bridge firmware in simavr (``edge_inspector/plc/sim.py``)
behind a wire proxy on a second pty: the daemon is its host (``plc.kind: bridge``), every part is
armed and decided there, and the proxy reads every frame on the wire, so the bridge's side is known
(what it accepted, applied and fail-safed). Faults, in turn, ``--cycles`` times each:

- ``sigkill``: SIGKILL, then ``PRAGMA integrity_check`` on the file, then a restart;
- ``broker``: the broker is stopped while parts are decided, then started again;
- ``sigterm``: SIGTERM (the daemon must exit 0 after deciding every part it triggered), restart;
- ``bridge_reset``: the MCU is reset (simavr ``RESET``): its table is lost, the host re-arms;
- ``line_noise``: the proxy corrupts bytes both ways (byte error rate ``--ber``) for a while;
- ``judge_stall`` / ``judge_fail``: the judge sleeps past the deadline / raises, through the test
  facility ``pipeline.test_judge_faults`` (``edge_inspector/judge/faults.py``: a control file the
  soak writes; never set on a station);
- ``wal_stuck``: the soak holds a read transaction open on the database, so SQLite cannot
  checkpoint the write-ahead log (its automatic checkpoint fails silently): the store must report
  it (``store_wal_checkpoint_failing``, the log past ``wal_max_mb``) and clear it once let go;
- ``disk_full``: the daemon's file size limit (``RLIMIT_FSIZE``, set on the running process with
  prlimit; CPython ignores SIGXFSZ, so writes past it fail with EFBIG, as on a full disk) drops to
  the database's size: the store cannot write, the station says ``not_recording``, every trigger
  is a NO-READ ``not_recorded`` fail-safe and the bridge shows FAULT; then the limit is lifted.

``hostile`` is always on: the replay folder holds a truncated JPEG (an end marker appended), a PNG
whose header claims 60000x60000, a zero-byte file, a FIFO and random bytes, each replayed once per
pass: every one must be a NO-READ at a REJECT gate.

Invariants checked at the end (a last SIGTERM):

- every trigger of a run that ended by SIGTERM has exactly one row, or, inside a ``disk_full``
  window, a logged decision without a row (``unrecorded``; checkable: each is a ``not_recorded``
  NO-READ, except the parts already decided when the first write failed, and none was passed by the
  gate); no part has two rows; every decision a killed run logged has its row (the log line comes
  after the row's commit);
- every row was published on ``.../result`` at least once;
- ``PRAGMA integrity_check`` is ``ok`` after every kill;
- bridge side: every ARM the bridge accepted ended in an APPLIED or a FAILSAFE from the bridge. A
  part the bridge lost with a reset is armed again by the host, except one whose DECIDE was on the
  wire then (it may have acted: never resent, docs/plc.md): no pulse nor fail-safe can be proven
  for it, its row must say ``gate unconfirmed``, and it is counted as ``uncovered`` (READY was off);
- every recorded action is what the gate did: the bridge's APPLIED/FAILSAFE action for that part
  (without a bridge: the outcome's, the fail-safe REJECT for a NO-READ); a row whose gate is
  ``not_delivered`` (no pulse: PASS) for a part the station did not pass is "wrongly passed";
- no daemon printed a traceback (an exception no handler took: a thread that died);
- a ``disk_full`` window raised the bridge's FAULT (STATION fault 3) and was reported
  (``store_write_failed``).

It prints a table of tried / parts / lost / duplicated / wrongly passed / errors per fault (a part
counts for the fault whose window its trigger fell in) and a JSON line, and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import cv2
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_inspector.plc import protocol as p  # noqa: E402
from edge_inspector.plc import sim as simmod  # noqa: E402
from edge_inspector.synth.pcb import BoardDesign, make_board  # noqa: E402
from tools.starters import Broker, wait_until  # noqa: E402
from tools.stress_lifecycle import write_product  # noqa: E402

PREFIX = "soak"
STATION = "soak"
BRIDGE_FAULTS = ("bridge_reset", "line_noise")
FAULTS = ("sigkill", "broker", "sigterm", "bridge_reset", "line_noise", "judge_stall", "judge_fail",
          "disk_full", "wal_stuck")
WAL_MAX_MB = 0.25  # the soak's service.retention.wal_max_mb: a stuck log is past it in a few rows
HOSTILE = ("h-truncated.jpg", "h-huge.png", "h-zero.png", "h-fifo.png", "h-garbage.bmp")
MASK = 0xFFFFFFFF
# NO-READs for every trigger while they hold, whatever the frame (a hostile frame may get one)
STATION_WIDE = ("not_recorded", "paused", "queue_overflow", "timeout", "judge_error")


class Results:
    """A separate subscriber (persistent session, QoS 1) counting every result id it receives."""

    def __init__(self, port: int) -> None:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-{os.getpid()}",
                                  clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        subscribed = threading.Event()

        def on_connect(c, _u, _f, rc, _p):
            if not rc.is_failure:
                c.subscribe(f"{PREFIX}/{STATION}/result", qos=1)

        def on_message(_c, _u, msg):
            try:
                part = json.loads(msg.payload)["id"]
            except (ValueError, KeyError, TypeError):
                return
            with self.lock:
                self.ids[part] += 1

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("the soak's subscriber could not subscribe")

    def seen(self) -> set[str]:
        with self.lock:
            return set(self.ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Wire(simmod.WireProxy):
    """The wire between the daemon and the bridge (``WireProxy``: a second pty, with line noise at
    ``ber``), read both ways: what the bridge received (after the noise) and what it sent (before
    it). From that, the bridge's side of every part: ARMs it accepted, APPLIED and FAILSAFE."""

    def __init__(self, target: str, link: Path) -> None:
        self._sniff_lock = threading.Lock()
        self._rx, self._tx = p.StreamDecoder(), p.StreamDecoder()
        self._host_frames: dict[int, p.Message] = {}
        self._seen: list[tuple[int, int]] = []  # the bridge's last frames (seq, crc): its resends
        self.epoch = 0  # bridge boots seen (INFO session 0)
        self.armed: dict[int, int] = {}  # bridge part id -> the epoch of its last accepted ARM
        self.resolved: dict[int, tuple[str, str]] = {}  # bridge part id -> (how, PASS|REJECT)
        self.reset_lost: set[int] = set()  # armed, then the bridge reset before it resolved it
        self.station_faults = 0  # STATION fault=3 the bridge accepted
        super().__init__(target, link)

    def _from_link(self, data: bytes) -> None:  # what the bridge received, after the noise
        with self._sniff_lock:
            for f in self._rx.feed(data):
                if not isinstance(f.message, p.Ack | p.Nak):
                    self._host_frames[f.seq] = f.message

    def _from_target(self, data: bytes) -> None:  # what the bridge sent, before the noise
        with self._sniff_lock:
            for f in self._tx.feed(data):
                m = f.message
                if not isinstance(m, p.Ack | p.Nak):  # sequenced: resent until ACKed
                    if (f.seq, f.crc) in self._seen:
                        continue
                    self._seen = [*self._seen[-63:], (f.seq, f.crc)]
                if isinstance(m, p.Ack | p.Nak):
                    sent = self._host_frames.get(f.seq)
                    accepted = isinstance(m, p.Ack) or m.reason == p.NakReason.DUPLICATE_PART
                    if isinstance(sent, p.Arm) and accepted and sent.part_id not in self.resolved:
                        self.armed[sent.part_id] = self.epoch
                        self.reset_lost.discard(sent.part_id)
                    if isinstance(sent, p.Station) and isinstance(m, p.Ack) and sent.code:
                        self.station_faults += 1
                elif isinstance(m, p.Applied):
                    self.resolved.setdefault(m.part_id, ("applied", m.action.name))
                elif isinstance(m, p.Failsafe):
                    self.resolved.setdefault(m.part_id, (f"failsafe_{m.reason.name.lower()}",
                                                         m.action.name))
                elif isinstance(m, p.Info) and m.session == 0:  # a (re)booted bridge: new seqs
                    self._seen = [(f.seq, f.crc)]
                    self.epoch += 1
                    self.reset_lost |= {i for i in self.armed if i not in self.resolved}

    def unresolved(self) -> set[int]:
        with self._sniff_lock:
            return {i for i in self.armed if i not in self.resolved and i not in self.reset_lost}


def write_frames(folder: Path, n: int, seed: int) -> None:
    """``n`` boards (about a third with defects) and the hostile files, replayed in name order."""
    folder.mkdir(parents=True)
    design = BoardDesign(7)
    for i in range(n):
        board = make_board(design, 20_000_000 + seed * 1000 + i, defects=1 if i % 3 == 2 else 0)
        cv2.imwrite(str(folder / f"b-{i:03d}.png"), board.image)
    jpg = cv2.imencode(".jpg", make_board(design, 1).image)[1].tobytes()
    (folder / HOSTILE[0]).write_bytes(jpg[: len(jpg) // 2] + b"\xff\xd9")

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    (folder / HOSTILE[1]).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                                      + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    (folder / HOSTILE[2]).write_bytes(b"")
    os.mkfifo(folder / HOSTILE[3])
    (folder / HOSTILE[4]).write_bytes(os.urandom(3000))


def write_config(path: Path, data: Path, product: Path, frames: Path, port: int, interval_ms: float,
                 bridge: str | None, judge_faults: Path) -> Path:
    cfg = {
        "station": {"name": STATION, "data_dir": str(data)},
        "capture": {"kind": "folder", "path": str(frames), "loop": True, "interval_ms": interval_ms},
        "regions": {"kind": "variation", "reference": str(product / "reference.png"),
                    "good_images": str(product / "good")},
        "policy": {"deadline_ms": 2500},
        "pipeline": {"test_judge_faults": str(judge_faults)},
        "service": {"retention": {"rows_max_age_days": None, "db_max_mb": None, "min_free_mb": 0,
                                  "wal_max_mb": WAL_MAX_MB}},
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": PREFIX, "reconnect_max_s": 1,
                 "stop_flush_s": 1.0},
        "logging": {"level": "info", "format": "json"},
    }
    if bridge:
        cfg["plc"] = {"kind": "bridge", "port": bridge, "boot_wait_ms": 0, "reject_pulse_ms": 2,
                      "heartbeat_timeout_ms": 1000, "reconnect_backoff_s": 0.05, "reconnect_max_s": 0.5}
    path.write_text(yaml.safe_dump(cfg))
    return path


class Run:
    """One daemon process; its stderr (JSON log lines) read through a pipe, so that a file size
    limit on the process never stops its logging, and kept in ``events``."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.log = log
        self.ended_by = ""
        self.events: list[dict] = []
        self.tracebacks: list[str] = []  # an exception no handler took (a thread that died)
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(REPO),
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with open(self.log, "wb") as out:
            for line in self.proc.stderr:
                out.write(line)
                if line.startswith((b"Traceback", b"Exception in thread")):
                    self.tracebacks.append(line.decode(errors="replace").strip())
                if line.startswith(b"{"):
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    with self.lock:
                        self.events.append(event)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None
        finally:
            self.reader.join(10)

    def of(self, name: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e.get("event") == name]

    def decisions(self) -> int:
        with self.lock:
            return sum(1 for e in self.events if e.get("event") == "decision")

    def tag(self) -> str | None:
        """The run tag of this process's part ids (``<time>-<tag>-<seq>``)."""
        part = next((e["part_id"] for e in self.of("decision")), None)
        return part.split("-")[1] if part else None

    def id_base(self) -> int | None:
        ids = self.of("plc_part_ids")
        return ids[-1]["id_base"] if ids else None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT id, part_id, seq, outcome, action, reason, gate, source, trigger_time "
                            "FROM inspections ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def soak(args: argparse.Namespace, root: Path) -> dict:
    bridge_why = "--no-bridge" if args.no_bridge else simmod.unavailable()
    faults = [f for f in (args.faults.split(",") if args.faults else FAULTS)
              if not (bridge_why and f in BRIDGE_FAULTS)]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise SystemExit(f"--faults: unknown {sorted(unknown)}; known: {', '.join(FAULTS)}")
    broker = Broker(root / "broker").start()
    results = Results(broker.port)
    sim = wire = None
    if not bridge_why:
        sim = simmod.BridgeSim()
        sim.wait("PIN", "FAULT", "1")
        wire = Wire(sim.pty, root / "ttyBRIDGE")
    product = write_product(root / "product")
    frames = root / "frames"
    write_frames(frames, args.boards, args.seed)
    control = root / "judge-faults.json"
    data = root / "data"
    cfg = write_config(root / "station.yaml", data, product, frames, broker.port, args.interval_ms,
                       str(wire.link) if wire else None, control)
    db = data / "inspections.db"
    schedule = [f for _ in range(args.cycles) for f in faults]
    step = max(8, args.parts // (len(schedule) + 1))
    runs: list[Run] = []
    table = {f: Counter() for f in (*faults, "hostile", "end")}
    violations: list[str] = []
    windows: list[tuple[str, float, float]] = []  # (fault, wall start, wall end) of trigger times
    disk_windows: list[tuple[float, float]] = []

    def start() -> Run:
        run = Run(cfg, root / f"daemon{len(runs)}.log")
        runs.append(run)
        return run

    def decided() -> int:
        return sum(r.decisions() for r in runs)

    def grow(n: int, what: str, timeout: float = 300) -> None:
        goal = decided() + n
        if not wait_until(lambda: decided() >= goal or runs[-1].proc.poll() is not None, timeout, 0.05):
            raise SystemExit(f"no progress before {what}: {runs[-1].tail()}")
        if runs[-1].proc.poll() is not None:
            raise SystemExit(f"the daemon exited by itself before {what}: {runs[-1].tail()}")

    def term(run: Run, fault: str) -> None:
        run.proc.send_signal(signal.SIGTERM)
        rc = run.wait(120)
        run.ended_by = fault
        if rc != 0:
            violations.append(f"{fault}: SIGTERM exit status {rc} (expected 0)")
            table[fault]["errors"] += 1

    def judge(mode: str, **kw) -> None:
        tmp = control.with_suffix(".new")
        tmp.write_text(json.dumps({"mode": mode, **kw}))
        tmp.replace(control)

    run = start()
    for fault in schedule:
        grow(step, fault)
        table[fault]["tried"] += 1
        t0 = time.time()
        if fault == "sigkill":
            run.proc.kill()
            run.wait(30)
            run.ended_by = fault
            ok = integrity(db)
            if ok != "ok":
                violations.append(f"sigkill: integrity_check after the kill: {ok}")
                table[fault]["errors"] += 1
            run = start()
            grow(3, "the restart after a kill")
        elif fault == "broker":
            broker.stop()
            grow(max(3, step // 2), "the broker's restart")
            broker.start()
        elif fault == "sigterm":
            term(run, fault)
            run = start()
            grow(3, "the restart after SIGTERM")
        elif fault == "bridge_reset":
            sim.cmd("RESET")
            grow(max(3, step // 2), "after the bridge reset")
        elif fault == "line_noise":
            wire.ber = args.ber
            grow(step, "under line noise")
            wire.ber = 0.0
        elif fault in ("judge_stall", "judge_fail"):
            judge("stall", stall_s=3.0) if fault == "judge_stall" else judge("fail")
            grow(max(3, step // 3), f"with the {fault}")
            judge("ok")
        elif fault == "disk_full":
            limit = db.stat().st_size
            failed_before = len(run.of("store_write_failed"))
            resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            shown = wait_until(lambda: len(run.of("store_write_failed")) > failed_before, 120, 0.05)
            if not shown:
                violations.append("disk_full: no store_write_failed within 120 s")
                table[fault]["errors"] += 1
            grow(max(3, step // 3), "with the disk full")
            fault_shown = (wire is None or wait_until(
                lambda: any(e.get("code") == 3 for e in run.of("plc_station_fault")), 30, 0.05))
            if not fault_shown:
                violations.append("disk_full: the bridge was not told (no STATION fault 3)")
                table[fault]["errors"] += 1
            resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            if not wait_until(lambda: run.of("store_recovered"), 120, 0.05):
                violations.append("disk_full: the store did not recover once the limit was lifted")
                table[fault]["errors"] += 1
            disk_windows.append((t0 - 1.0, time.time()))
        elif fault == "wal_stuck":  # a reader holds an old snapshot: no checkpoint can pass it
            failing = len(run.of("store_wal_checkpoint_failing"))
            reader = sqlite3.connect(str(db), isolation_level=None, timeout=10)
            reader.execute("BEGIN")
            reader.execute("SELECT COUNT(*) FROM inspections").fetchone()
            goal = decided() + 400
            if not wait_until(lambda: len(run.of("store_wal_checkpoint_failing")) > failing
                              or decided() >= goal, 300, 0.05):
                raise SystemExit(f"no progress with the log stuck: {run.tail()}")
            if len(run.of("store_wal_checkpoint_failing")) <= failing:
                violations.append("wal_stuck: a log that could not be checkpointed was not reported")
                table[fault]["errors"] += 1
            recovered = len(run.of("store_wal_checkpoint_recovered"))
            reader.execute("COMMIT")
            reader.close()
            if not wait_until(lambda: len(run.of("store_wal_checkpoint_recovered")) > recovered, 120, 0.05):
                violations.append("wal_stuck: the log's fault did not clear once the reader let go")
                table[fault]["errors"] += 1
        windows.append((fault, t0 - 0.5, time.time() + 1.0))
    grow(step, "the end")
    table["end"]["tried"] += 1
    term(run, "end")
    if wire is not None:
        wait_until(lambda: not wire.unresolved(), 10, 0.05)  # the last FAILSAFE/APPLIED on the wire

    got = rows(db)
    ids = [r[1] for r in got]
    wait_until(lambda: set(ids) <= results.seen(), 60)  # at least once: the outbox drains on restart
    seen = results.seen()
    results.close()
    broker.stop()

    def fault_at(wall: float) -> str:
        return next((f for f, a, b in reversed(windows) if a <= wall <= b), "end")

    by_tag: dict[str, list[tuple]] = defaultdict(list)
    for r in got:
        by_tag[r[1].split("-")[1]].append(r)
    row_ids = set(ids)
    runs_by_tag = {r.tag(): r for r in runs if r.tag()}

    def bridge_id(part_id: str, seq: int) -> int | None:
        run = runs_by_tag.get(part_id.split("-")[1])
        base = run.id_base() if run else None
        return None if base is None else (base + seq) & MASK

    def gate_of(part_id: str, seq: int) -> tuple[str, str] | None:
        bid = bridge_id(part_id, seq)
        return None if wire is None or bid is None else wire.resolved.get(bid)

    for part, n in Counter(ids).items():
        if n > 1:
            violations.append(f"duplicated: {part} has {n} rows")
            table["end"]["duplicated"] += 1
    for _id, part, seq, outcome, action, reason, gate, source, trig in got:
        fault = fault_at(trig)
        table[fault]["parts"] += 1
        table[fault]["NO-READ"] += outcome == "NO-READ"
        hostile = Path(source or "").name in HOSTILE
        if hostile:
            table["hostile"]["tried"] += 1
            table["hostile"]["parts"] += 1
            table["hostile"]["NO-READ"] += outcome == "NO-READ"
            if outcome != "NO-READ" or reason not in ("unreadable_frame", *STATION_WIDE):
                violations.append(f"{part}: hostile {Path(source).name} was {outcome} {reason}")
                table["hostile"]["errors"] += 1
        station = "REJECT" if outcome == "NO-READ" else outcome
        at_gate = gate_of(part, seq)
        if wire is not None:
            if at_gate is not None:
                gate_action = at_gate[1]
            elif gate == "not_delivered":
                gate_action = "PASS"  # the bridge never had it: no pulse
            elif gate == "unconfirmed" and bridge_id(part, seq) in wire.reset_lost:
                # its DECIDE was on the wire when the bridge reset: the MCU lost its table, so no
                # FAILSAFE can come, and the host cannot resend it (it may have acted). The row says
                # so (unconfirmed); READY was off meanwhile. Counted as "uncovered", not hidden.
                gate_action = None
            else:
                gate_action = None
                violations.append(f"{part}: no APPLIED or FAILSAFE on the wire (row gate {gate})")
                table[fault]["lost"] += 1
            if gate_action is not None and action != gate_action:
                violations.append(f"{part}: recorded {action} ({gate}), the gate did {gate_action}")
                table[fault]["errors"] += 1
        else:
            gate_action = action
            if action != station:
                violations.append(f"{part}: recorded action {action} for a {outcome} without a gate")
                table[fault]["errors"] += 1
        if gate_action == "PASS" and station != "PASS":
            violations.append(f"{part}: {outcome} ({reason}) passed by the gate ({gate})")
            table["hostile" if hostile else fault]["wrongly passed"] += 1
        if part not in seen:
            violations.append(f"{part}: never published")
            table[fault]["lost"] += 1

    # decisions logged without a row: only inside a disk_full window, and never passed by the gate
    unrecorded = 0
    for run in runs:
        for e in run.of("decision"):
            if e["part_id"] in row_ids:
                continue
            wall = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
            in_disk = any(a <= wall <= b for a, b in disk_windows)
            fault = fault_at(wall)
            if not in_disk:
                violations.append(f"{e['part_id']}: decided ({e['reason']}) but has no row")
                table[fault]["lost"] += 1
                continue
            unrecorded += 1
            table["disk_full"]["unrecorded"] += 1
            seq = int(e["part_id"].split("-")[-1])
            at_gate = gate_of(e["part_id"], seq)
            station = "REJECT" if e["outcome"] == "NO-READ" else e["outcome"]
            if e["reason"] != "not_recorded":
                table["disk_full"]["decided, row lost"] += 1
            if at_gate is not None and at_gate[1] == "PASS" and station != "PASS":
                violations.append(f"{e['part_id']}: unrecorded {e['outcome']} passed by the gate")
                table["disk_full"]["wrongly passed"] += 1
    for run in runs:
        for tb in run.tracebacks:
            violations.append(f"{run.log.name}: an unhandled exception: {tb}")
            table[run.ended_by or "end"]["errors"] += 1
    for run in runs:  # every trigger of a cleanly stopped run has its row (or is unrecorded)
        if run.ended_by not in ("sigterm", "end"):
            continue
        stopped = run.of("station_stopped")
        if not stopped:
            violations.append(f"{run.log.name}: no station_stopped after SIGTERM")
            continue
        triggers, tag = stopped[-1].get("triggers", 0), run.tag()
        logged = {e["part_id"] for e in run.of("decision")}
        written = len(by_tag.get(tag, [])) if tag else 0
        missing = len(logged - row_ids)  # counted above (unrecorded, or a violation)
        if triggers != written + missing:
            violations.append(f"{run.log.name}: {triggers} triggers, {written} rows, {missing} unrecorded")
            table[run.ended_by]["lost"] += max(0, triggers - written - missing)
            table[run.ended_by]["duplicated"] += max(0, written + missing - triggers)
    uncovered = in_flight = 0
    if wire is not None:  # parts the bridge had whose run died before their row: its fail-safe
        logged = {e["part_id"] for r in runs for e in r.of("decision")}
        for run in runs:
            base, tag = run.id_base(), run.tag()
            if base is None or tag is None:
                continue
            parts = {(base + int(x.split("-")[-1])) & MASK: x for x in
                     {r[1] for r in by_tag.get(tag, [])} | {x for x in logged if x.split("-")[1] == tag}}
            for bid in wire.armed:
                seq = (bid - base) & MASK
                if seq >= 100_000 or bid in parts:
                    continue
                in_flight += 1
                how = wire.resolved.get(bid)
                if run.ended_by != "sigkill":
                    violations.append(f"bridge part {bid:#010x} (seq {seq}): armed, no row, no decision logged")
                    table["end"]["lost"] += 1
                elif how is not None and how[1] == "PASS" and how[0] != "applied":
                    violations.append(f"bridge part {bid:#010x}: in flight at the kill, fail-safe PASS")
                    table["sigkill"]["wrongly passed"] += 1
        table.get("sigkill", Counter())["in flight"] += in_flight
        for bid in sorted(wire.unresolved()):
            violations.append(f"bridge part {bid:#010x}: armed at the bridge, never applied nor fail-safed")
            table["end"]["lost"] += 1
        uncovered = len(wire.reset_lost - set(wire.resolved))
        if "bridge_reset" in table:
            table["bridge_reset"]["uncovered"] += uncovered
    if sim is not None:
        wire.close()
        sim.stop()
    return {"parts": len(got), "runs": len(runs), "published": len(seen & row_ids),
            "unrecorded": unrecorded, "bridge": None if bridge_why else {
                "armed": len(wire.armed), "resolved": len(wire.resolved), "boots_seen": wire.epoch,
                "uncovered_after_reset": uncovered, "in_flight_at_kills": in_flight, "station_faults": wire.station_faults,
                "corrupted_bytes": wire.corrupted},
            "no_bridge_because": bridge_why, "violations": violations,
            "table": {k: dict(v) for k, v in table.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=300, help="about this many parts in all")
    ap.add_argument("--cycles", type=int, default=2, help="times each fault runs")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="time between two triggers")
    ap.add_argument("--boards", type=int, default=12, help="good and defective boards in the replay")
    ap.add_argument("--ber", type=float, default=2e-2, help="byte error rate of line_noise")
    ap.add_argument("--faults", default="", help=f"comma-separated subset of {','.join(FAULTS)}")
    ap.add_argument("--no-bridge", action="store_true", help="no bridge in simavr (plc.kind none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ei-soak-"))
    try:
        out = soak(args, root)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        else:
            sys.stderr.write(f"kept {root}\n")
    cols = ("tried", "parts", "NO-READ", "lost", "duplicated", "wrongly passed", "errors", "unrecorded",
            "uncovered", "in flight")
    lines = [f"{'fault':13}" + "".join(f"{c:>11}" for c in cols)]
    for fault, counts in out["table"].items():
        lines.append(f"{fault:13}" + "".join(f"{counts.get(c, 0):>11}" for c in cols))
    lines.append(f"{out['parts']} rows in {out['runs']} runs, {out['published']} published, "
                 f"{out['unrecorded']} unrecorded (disk full); bridge: {out['bridge'] or out['no_bridge_because']}; "
                 f"{len(out['violations'])} violations")
    lines += [f"  {v}" for v in out["violations"][:30]]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stdout.write(json.dumps(out) + "\n")
    return 1 if out["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
