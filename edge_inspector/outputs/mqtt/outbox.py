"""The durable outbox: result messages written in the same SQLite transaction as the inspection row.

The outbox owns its table and migrates it (``migrate``, its version in ``schema_owners``) when the
store opens the file; the store calls :meth:`Outbox.write` inside the row's transaction
(``Store(..., writers=[outbox])``), so a part's row and its MQTT message are committed together or
not at all: after a SIGKILL at any
moment, every part in the inspections table has its message in the outbox. The publisher reads the
outbox on its own connection, in id order, and marks a row delivered when the broker's PUBACK
arrives; delivered rows are deleted after ``outbox_keep_delivered_s``.

Ids are AUTOINCREMENT, never reused, so the publisher's cursor (the last id it published) is safe
across pruning. The undelivered rows are capped: when full, the oldest undelivered message is
dropped (the part's row stays in the inspections table), counted and logged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
import structlog

from edge_inspector.envelope import Action, Inspection
from edge_inspector.outputs import schema
from edge_inspector.outputs.mqtt.topics import PAYLOAD_VERSION, decided_wall, result_payload
from edge_inspector.versions import Versions

log = structlog.get_logger(__name__)

TABLE = "outbox"
OWNER = "outbox"


def _v1(db: sqlite_utils.Database) -> None:
    """The table (IF NOT EXISTS: a file of store schema v2 already has it, made by the store then)."""
    db.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        part_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        decided REAL NOT NULL,   -- wall time of the decision
        created REAL NOT NULL,   -- wall time of the write
        delivered REAL           -- wall time of the PUBACK; NULL while undelivered
    )""")
    db.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {TABLE}(id) WHERE delivered IS NULL")
    db.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_delivered ON {TABLE}(delivered) "
               "WHERE delivered IS NOT NULL")


MIGRATIONS = [_v1]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    part_id: str
    topic: str
    payload: bytes
    decided: float


def count_pending(conn: sqlite3.Connection) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE delivered IS NULL").fetchone()[0]


def next_batch(conn: sqlite3.Connection, after_id: int, limit: int) -> list[Message]:
    rows = conn.execute(f"SELECT id, part_id, topic, payload, decided FROM {TABLE} "
                        f"WHERE delivered IS NULL AND id > ? ORDER BY id LIMIT ?", (after_id, limit))
    return [Message(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]


class Outbox:
    """The writer side (the store's thread) and the shared counters (read by the publisher)."""

    name = "outbox"

    def __init__(self, topic: str | Callable[[Inspection], str], versions: Callable[[], Versions],
                 max_rows: int, gate_topic: str | None = None) -> None:
        """``topic``: the result topic, or the topic of each part (a multi-camera station's, under
        the part's camera); ``versions``: what each result is stamped with (the stages in force,
        read per part); ``gate_topic``: where a late gate answer goes (None: nowhere)."""
        self.topic = topic
        self.gate_topic = gate_topic
        self.versions = versions
        self.max_rows = max_rows
        self.written = 0
        self.dropped = 0
        self.delivered = 0
        self._pending: int | None = None  # undelivered rows; counted on first use
        self._full = False
        self._lock = threading.Lock()

    def migrate(self, db: sqlite_utils.Database, path: Path) -> None:
        """The outbox's own table, to its version (called by the store when it opens the file)."""
        schema.migrate(db, path, OWNER, MIGRATIONS)

    @property
    def pending(self) -> int | None:
        return self._pending

    def write(self, db: sqlite_utils.Database, inspection: Inspection) -> None:
        """Add the part's result message. Runs inside the store's transaction: no commit here."""
        decided = decided_wall(inspection)
        payload = result_payload(inspection, self.versions(), decided)
        self._insert(db.conn, inspection.frame.part_id,
                     self.topic if isinstance(self.topic, str) else self.topic(inspection), payload, decided)

    def regate(self, db: sqlite_utils.Database, part_id: str, action: Action, gate: str) -> None:
        """The part's result went out ``unconfirmed`` and the gate's answer came after it: a message
        on the gate topic says what the gate did. Runs inside the store's correcting transaction.
        (Consumers de-duplicate results on the part id, so the result itself is not sent again.)"""
        if self.gate_topic is None:
            return
        now = time.time()
        body = {"v": PAYLOAD_VERSION, "station": self.versions().station, "id": part_id,
                "action": str(action), "gate": gate, "was": "unconfirmed", "time": round(now, 6)}
        self._insert(db.conn, part_id, self.gate_topic,
                     json.dumps(body, separators=(",", ":")).encode(), now)

    def _insert(self, conn: sqlite3.Connection, part_id: str, topic: str, payload: bytes,
                decided: float) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = count_pending(conn)
            over = self._pending - self.max_rows + 1
        if over > 0:
            self._drop_oldest(conn, over)
        conn.execute(f"INSERT INTO {TABLE} (part_id, topic, payload, decided, created) "
                     f"VALUES (?, ?, ?, ?, ?)", (part_id, topic, payload, decided, time.time()))
        with self._lock:
            self._pending += 1
            self.written += 1

    def _drop_oldest(self, conn: sqlite3.Connection, n: int) -> None:
        cur = conn.execute(f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} "
                           f"WHERE delivered IS NULL ORDER BY id LIMIT ?)", (n,))
        with self._lock:
            self._pending -= cur.rowcount
            self.dropped += cur.rowcount
            first = not self._full
            self._full = True
        if first or self.dropped % 1000 == 0:
            log.warning("mqtt_outbox_full", cap=self.max_rows, dropped=self.dropped,
                        hint="the broker has been unreachable for long: the oldest undelivered results "
                        "are dropped from the outbox (they stay in the inspections table)")

    # --- the publisher's side (its own connection) ---------------------------------------------

    def mark_delivered(self, conn: sqlite3.Connection, ids: list[int]) -> int:
        if not ids:
            return 0
        now = time.time()
        n = 0
        for i in range(0, len(ids), 500):  # each statement its own short write transaction
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            n += conn.execute(f"UPDATE {TABLE} SET delivered = ? WHERE delivered IS NULL "
                              f"AND id IN ({marks})", (now, *chunk)).rowcount
        with self._lock:
            if self._pending is not None:
                self._pending = max(0, self._pending - n)
            self.delivered += n
            recovered = self._full and (self._pending or 0) < self.max_rows // 2
            if recovered:
                self._full = False
        if recovered:
            log.info("mqtt_outbox_below_cap", pending=self._pending, dropped=self.dropped)
        return n

    def prune(self, conn: sqlite3.Connection, keep_s: float) -> int:
        return conn.execute(f"DELETE FROM {TABLE} WHERE delivered IS NOT NULL AND delivered <= ?",
                            (time.time() - keep_s,)).rowcount

    def recount(self, conn: sqlite3.Connection) -> None:
        n = count_pending(conn)
        with self._lock:
            self._pending = n

    def health(self) -> dict[str, int | None]:
        with self._lock:
            return {"pending": self._pending, "written": self.written, "delivered": self.delivered,
                    "dropped": self.dropped}
