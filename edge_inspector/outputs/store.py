"""The SQLite store: one row per inspection (WAL, one writer), with schema migrations.

The schema version lives in ``PRAGMA user_version``; each migration runs in a transaction, after a
copy of the database file is taken (``<db>.bak-v<old>``), so a failed upgrade loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils
import structlog

from edge_inspector.envelope import Inspection
from edge_inspector.outputs.base import Output
from edge_inspector.outputs.images import RejectImages

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
    from edge_inspector.outputs.mqtt.outbox import create_table

    create_table(db)  # the MQTT outbox, written in the same transaction as the inspection row


def _v3(db: sqlite_utils.Database) -> None:
    # what the reject gate did: ``action`` is the gate's when a PLC link reports it, ``gate`` how
    # (applied, failsafe_deadline, failsafe_heartbeat, not_delivered, unconfirmed; NULL: no link)
    db[TABLE].add_column("gate", str)


MIGRATIONS = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


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
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path}: schema version {version} is newer than this program's "
                           f"({SCHEMA_VERSION}); upgrade edge-inspector")
    if 0 < version < SCHEMA_VERSION:
        backup = path.with_name(f"{path.name}.bak-v{version}")
        dest = sqlite3.connect(str(backup))
        db.conn.backup(dest)
        dest.close()
        log.info("store_backup", path=str(backup), version=version)
    for v in range(version, SCHEMA_VERSION):
        with db.conn:
            db.conn.execute("BEGIN")
            MIGRATIONS[v](db)
            db.conn.execute(f"PRAGMA user_version={v + 1}")
        log.info("store_migrated", to_version=v + 1)
    return SCHEMA_VERSION


def row_for(inspection: Inspection, model_hash: str, config_hash: str,
            image_path: str | None) -> dict[str, Any]:
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
        "model_hash": model_hash, "config_hash": config_hash, "image_path": image_path,
    }


class Store(Output):
    """Writes one row per inspection; saves the reject image first so the row can point at it."""

    name = "store"

    def __init__(self, path: Path, images: RejectImages | None, model_hash: str, config_hash: str,
                 same_transaction: list[Callable[[sqlite_utils.Database, Inspection], None]] | None = None
                 ) -> None:
        """``same_transaction``: writers called with (db, inspection) inside the row's transaction
        (the MQTT outbox): the row and what they write are committed together or not at all."""
        self.path = Path(path)
        self.same_transaction = list(same_transaction or [])
        self.db = connect(self.path)
        ok = self.db.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise RuntimeError(f"{self.path}: integrity check failed: {ok}")
        migrate(self.db, self.path)
        self.images = images
        self.model_hash = model_hash
        self.config_hash = config_hash
        self.rows = 0

    def emit(self, inspection: Inspection) -> None:
        image_path = self.images.save(inspection) if self.images else None
        row = row_for(inspection, self.model_hash, self.config_hash, image_path)
        conn = self.db.conn
        # IMMEDIATE: take the write lock first (waiting up to busy_timeout). A deferred transaction
        # that reads and then writes fails at once in WAL mode when another connection (the MQTT
        # publisher marking rows delivered) committed in between.
        conn.execute("BEGIN IMMEDIATE")
        try:
            self.db[TABLE].insert(row, replace=True)
            for write in self.same_transaction:
                write(self.db, inspection)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.rows += 1

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "state": "ok", "rows_written": self.rows, "path": str(self.path)}

    def close(self) -> None:
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
    return out


def recent(db: sqlite_utils.Database, n: int = 10) -> list[dict[str, Any]]:
    if TABLE not in db.table_names():
        return []
    return list(db.query(f"SELECT part_id, camera, trigger_time, outcome, action, reason, score, "
                         f"p_defective, decided_by, t_total_ms, boxes, image_path FROM {TABLE} "
                         f"ORDER BY id DESC LIMIT ?", [n]))
