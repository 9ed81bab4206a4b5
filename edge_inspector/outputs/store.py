"""The SQLite store: one row per inspection (WAL, one writer), with schema migrations.

The store owns the ``inspections`` table and its migrations (``outputs/schema.py``: the version is
``PRAGMA user_version``; each migration runs in a transaction after a copy ``<db>.bak-v<old>``). A
table written in the same transaction as the row (the MQTT outbox) belongs to its own owner, a
:class:`TableWriter` that migrates its own schema when the store opens the file.

Connections: the store's one connection is written by the worker thread only, and closed by the
daemon after the worker and every service are stopped; services that read or prune the file (the
MQTT publisher, retention) open their own connection on their own thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import sqlite_utils
import structlog

from edge_inspector.envelope import Action, Inspection
from edge_inspector.errors import StartupError
from edge_inspector.outputs import schema
from edge_inspector.outputs.base import Output
from edge_inspector.versions import Versions

log = structlog.get_logger(__name__)

TABLE = "inspections"


def _v1(db: sqlite_utils.Database) -> None:
    db[TABLE].create({
        "id": int, "part_id": str, "seq": int, "camera": str, "source": str,
        "trigger_time": float, "decided_time": float,
        "outcome": str, "action": str, "reason": str, "detail": str, "late": int,
        "score": float, "p_defective": float, "confidence": float, "defect_type": str, "decided_by": str,
        "boxes": str, "votes": str, "map": str, "timings": str,
        "t_capture_ms": float, "t_queue_ms": float, "t_regions_ms": float, "t_judge_ms": float,
        "t_policy_ms": float, "t_total_ms": float,
        "model_hash": str, "config_hash": str, "image_path": str,
    }, pk="id", not_null={"part_id", "outcome", "action", "reason"})
    db[TABLE].create_index(["part_id"], unique=True)
    db[TABLE].create_index(["trigger_time"])
    db[TABLE].create_index(["outcome"])


def _v2(db: sqlite_utils.Database) -> None:
    """v2 created the MQTT outbox's table here; the outbox now owns and migrates it itself."""


def _v3(db: sqlite_utils.Database) -> None:
    # what the reject gate did: ``action`` is the gate's when a PLC link reports it, ``gate`` how
    # (applied, failsafe_deadline, failsafe_heartbeat, not_delivered, unconfirmed; NULL: no link)
    db[TABLE].add_column("gate", str)


def _v4(db: sqlite_utils.Database) -> None:
    db[TABLE].add_column("recipe", str)
    db[TABLE].add_column("recipe_version", str)


def _v5(db: sqlite_utils.Database) -> None:
    # the judge's evidence (``verdict.details``): NULL for a part no VLM looked at
    for name, kind in EVIDENCE.items():
        db[TABLE].add_column(name, kind)


def _v6(db: sqlite_utils.Database) -> None:
    # multi-camera stations: ``camera`` (there since v1) is the camera or view set of the part, and
    # is queried per camera (status, retention by camera); ``views`` is a view set's part's views as
    # JSON (camera, decision, reason, detail, score, P(defective), boxes), NULL for one camera's part
    db[TABLE].add_column("views", str)
    db[TABLE].create_index(["camera", "trigger_time"], if_not_exists=True)


def _v7(db: sqlite_utils.Database) -> None:
    # the model registry's version of the weights that judged the part (NULL: not from the registry)
    db[TABLE].add_column("model_version", str)


EVIDENCE = {"p_logit": float, "vote_share": float, "valid_votes": int, "invalid_votes": int,
            "prefix_cache_hit": int, "constrained": int}
MIGRATIONS = [_v1, _v2, _v3, _v4, _v5, _v6, _v7]
SCHEMA_VERSION = len(MIGRATIONS)


class DuplicatePart(RuntimeError):
    """A row for this part id exists already: the store never overwrites an inspection."""


class TableWriter(Protocol):
    """A table written inside the row's transaction, owned (and migrated) by someone else."""

    name: str

    def migrate(self, db: sqlite_utils.Database, path: Path) -> None: ...

    def write(self, db: sqlite_utils.Database, inspection: Inspection) -> None: ...

    def regate(self, db: sqlite_utils.Database, part_id: str, action: Action, gate: str) -> None:
        """The part's ``unconfirmed`` row was just corrected to what the gate did (inside that
        transaction)."""


class ImageSaver(Protocol):
    def save(self, inspection: Inspection) -> str | None: ...


def connect(path: Path, readonly: bool = False) -> sqlite_utils.Database:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return sqlite_utils.Database(conn)


def migrate(db: sqlite_utils.Database, path: Path) -> int:
    """The store's own tables to :data:`SCHEMA_VERSION` (StartupError for a newer file)."""
    return schema.migrate(db, path, schema.USER_VERSION, MIGRATIONS)


def row_for(inspection: Inspection, versions: Versions, image_path: str | None) -> dict[str, Any]:
    j = inspection.to_json()
    t = inspection.decision.timings_ms
    return {
        "part_id": j["id"], "seq": j["seq"], "camera": j["camera"], "source": j["source"],
        "trigger_time": j["trigger_time"], "decided_time": time.time(),
        "outcome": j["decision"], "action": j["action"], "gate": j["gate"], "reason": j["reason"],
        "detail": j["detail"],
        "late": int(j["late"]), "score": j["score"], "p_defective": j["p_defective"],
        "confidence": j["confidence"], "defect_type": j["defect_type"], "decided_by": j["decided_by"],
        "boxes": json.dumps(j["regions"]), "votes": json.dumps(j["votes"]),
        "map": json.dumps(j["map"]), "timings": json.dumps(j["timings_ms"]),
        **{f"t_{k}_ms": t.get(k) for k in ("capture", "queue", "regions", "judge", "policy", "total")},
        "model_hash": versions.model, "model_version": versions.model_version, "config_hash": versions.config, "recipe": versions.recipe,
        "recipe_version": versions.recipe_version, "image_path": image_path,
        **evidence_of(j.get("judge") or {}),
        **({"views": json.dumps(j["views"])} if "views" in j else {}),  # a view set's part only
    }


def evidence_of(details: dict[str, Any]) -> dict[str, Any]:
    """The judge's evidence columns from ``verdict.details`` (None where the judge gave none)."""
    row = {}
    for name, kind in EVIDENCE.items():
        value = details.get(name)
        row[name] = None if value is None or isinstance(value, dict | list | str) else kind(value)
    return row


UNKNOWN = Versions(station="", model="", config="")
WAL_CHECK_S = 1.0  # how often the write-ahead log's size is looked at (after a write)


class Store(Output):
    """Writes one row per inspection; saves the reject image first so the row can point at it."""

    name = "store"

    def __init__(self, path: Path, images: ImageSaver | None = None,
                 versions: Callable[[], Versions] = lambda: UNKNOWN,
                 writers: Sequence[TableWriter] = (), wal_max_mb: float = 64.0) -> None:
        """``versions``: what each row is stamped with (the stages in force, read per part).
        ``writers``: tables written inside the row's transaction (the MQTT outbox): the row and what
        they write are committed together or not at all. ``wal_max_mb``: past this the write-ahead
        log is checkpointed by hand and a checkpoint that cannot complete is reported
        (:attr:`wal_fault`): SQLite's automatic checkpoint fails silently."""
        self.path = Path(path)
        self.images = images
        self.versions = versions
        self.writers = list(writers)
        self.rows = 0
        self.refused = 0
        self.failed = 0  # writes that failed (disk full, I/O)
        self.regated = 0  # unconfirmed rows corrected by a late gate answer
        self.fault: str | None = None
        self.wal_max_bytes = int(wal_max_mb * 1024 * 1024)
        self.wal_fault: str | None = None  # the log cannot be checkpointed (rows still recorded)
        self.wal_checks_failed = 0
        self._wal_checked = float("-inf")
        self.db = connect(self.path)
        try:
            ok = self.db.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise StartupError(f"{self.path}: the database failed its integrity check ({ok}); "
                                   "restore it from a backup or move it away")
            migrate(self.db, self.path)
            for writer in self.writers:
                writer.migrate(self.db, self.path)
            # a log once checkpointed is truncated back to the bound when it is reset
            self.db.execute(f"PRAGMA journal_size_limit={self.wal_max_bytes}")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StartupError(f"{self.path}: not a usable database ({exc})") from None
        except BaseException:
            self.close()
            raise

    def emit(self, inspection: Inspection) -> None:
        """Writes the row. A write that fails (SQLITE_FULL, an I/O error, no room for the image) sets
        :attr:`fault` (the station reports it and fail-safes every trigger) until one succeeds."""
        try:
            self._write(inspection)
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            if self.fault is None:
                log.error("store_write_failed", path=str(self.path), error=f"{type(exc).__name__}: {exc}",
                          detail="the station reports it cannot record and fail-safes every trigger")
            self.failed += 1
            self.fault = f"cannot write {self.path.name}: {type(exc).__name__}: {exc}"
            raise
        if self.fault is not None:
            log.warning("store_recovered", path=str(self.path), failed=self.failed)
            self.fault = None
        self.check_wal()

    def check_wal(self, now: float | None = None) -> str | None:
        """At most every :data:`WAL_CHECK_S`: when the write-ahead log is past its bound, a passive
        checkpoint (it never waits for a lock) must copy every frame back; one that fails, or
        leaves frames behind, is the store's :attr:`wal_fault` until the log is back in bounds or
        checkpoints fully. Returns the fault."""
        now = time.monotonic() if now is None else now
        if now - self._wal_checked < WAL_CHECK_S:
            return self.wal_fault
        self._wal_checked = now
        try:
            size = self.path.with_name(self.path.name + "-wal").stat().st_size
        except OSError:
            size = 0
        problem = None
        if size > self.wal_max_bytes:
            try:
                busy, frames, done = self.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if busy or frames < 0 or done < frames:
                    problem = (f"the write-ahead log is {size / 2**20:.1f} MB (bound "
                               f"{self.wal_max_bytes / 2**20:g} MB) and a checkpoint copied {max(done, 0)} "
                               f"of {frames} frames: a reader holds an old snapshot or the main file "
                               "cannot be written")
            except sqlite3.DatabaseError as exc:
                problem = f"the write-ahead log cannot be checkpointed: {type(exc).__name__}: {exc}"
        if problem and self.wal_fault is None:
            log.error("store_wal_checkpoint_failing", path=str(self.path), wal_bytes=size, detail=problem,
                      hint="close whatever holds a read transaction open on the database; free disk "
                      "space; rows go on being recorded in the log")
        elif problem is None and self.wal_fault is not None:
            log.warning("store_wal_checkpoint_recovered", path=str(self.path), wal_bytes=size)
        if problem:
            self.wal_checks_failed += 1
        self.wal_fault = problem
        return problem

    def _write(self, inspection: Inspection) -> None:
        conn = self.db.conn
        part_id = inspection.frame.part_id
        if conn.execute(f"SELECT 1 FROM {TABLE} WHERE part_id = ?", (part_id,)).fetchone():
            self._refuse(part_id)  # before the image is saved: it would replace the first one's
        image_path = self.images.save(inspection) if self.images else None
        row = row_for(inspection, self.versions(), image_path)
        with self._transaction():
            try:
                self.db[TABLE].insert(row)
            except sqlite3.IntegrityError:
                self._refuse(part_id)
            for writer in self.writers:
                writer.write(self.db, inspection)
        self.rows += 1

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (the connection autocommits otherwise): the row and what the
        writers add are committed together or rolled back. IMMEDIATE takes the write lock first
        (waiting up to busy_timeout): a deferred transaction that reads and then writes fails at once
        in WAL mode when another connection (the MQTT publisher marking rows delivered, retention)
        committed in between."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")  # inside: a COMMIT that fails (disk full) must not leave it open
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def regate(self, part_id: str, action: Action, gate: str) -> None:
        """The gate's answer came after the row was written ``unconfirmed``: the row is corrected
        to what the gate did (its ``action`` and ``gate``); any other row is left as it is."""
        with self._transaction():  # the correction and the writers' part of it (the outbox's message)
            n = self.db.conn.execute(f"UPDATE {TABLE} SET action = ?, gate = ? WHERE part_id = ? "
                                     "AND gate = 'unconfirmed'", (str(action), gate, part_id)).rowcount
            if n:
                for writer in self.writers:
                    writer.regate(self.db, part_id, action, gate)
        if n:
            self.regated += 1
            log.info("store_gate_corrected", part_id=part_id, action=str(action), gate=gate)

    def _refuse(self, part_id: str) -> None:
        self.refused += 1
        raise DuplicatePart(f"part {part_id} is in the store already: this inspection is refused, "
                            "the first one is kept")

    def health(self) -> dict[str, Any]:
        state = "failing" if self.fault else "wal_not_checkpointed" if self.wal_fault else "ok"
        return {"name": self.name, "state": state, "fault": self.fault, "wal_fault": self.wal_fault,
                "wal_checks_failed": self.wal_checks_failed, "rows_written": self.rows,
                "refused": self.refused, "failed": self.failed, "regated": self.regated,
                "path": str(self.path)}

    def close(self) -> None:
        """Once the worker and the services are stopped (the daemon's shutdown order)."""
        try:
            self.db.conn.close()
        except sqlite3.ProgrammingError:
            pass


# --- reading, for the status CLI ---------------------------------------------------------------


def totals(db: sqlite_utils.Database) -> dict[str, Any]:
    if TABLE not in db.table_names():
        return {"parts": 0, "PASS": 0, "REJECT": 0, "NO-READ": 0, "reject_rate": 0.0}
    counts = dict(db.execute(f"SELECT outcome, COUNT(*) FROM {TABLE} GROUP BY outcome").fetchall())
    parts = sum(counts.values())
    out = {"parts": parts, **{k: counts.get(k, 0) for k in ("PASS", "REJECT", "NO-READ")}}
    out["reject_rate"] = round(out["REJECT"] / parts, 4) if parts else 0.0
    first_last = db.execute(f"SELECT MIN(trigger_time), MAX(trigger_time), "
                            f"AVG(t_total_ms) FROM {TABLE}").fetchone()
    out["first_time"], out["last_time"], out["mean_total_ms"] = first_last
    cams: dict[str, dict[str, int]] = {}
    for camera, outcome, n in db.execute(f"SELECT camera, outcome, COUNT(*) FROM {TABLE} "
                                         "GROUP BY camera, outcome").fetchall():
        c = cams.setdefault(camera or "-", {"parts": 0, "PASS": 0, "REJECT": 0, "NO-READ": 0})
        c["parts"] += n
        c[outcome] = c.get(outcome, 0) + n
    out["cameras"] = cams  # per camera (or view set): a multi-camera station's rows say whose
    return out


def recent(db: sqlite_utils.Database, n: int = 10) -> list[dict[str, Any]]:
    if TABLE not in db.table_names():
        return []
    return list(db.query(f"SELECT part_id, camera, trigger_time, outcome, action, reason, score, "
                         f"p_defective, decided_by, t_total_ms, boxes, image_path, vote_share, valid_votes, "
                         f"invalid_votes FROM {TABLE} "
                         f"ORDER BY id DESC LIMIT ?", [n]))
