"""Review labels: what a person said of one inspection (true defect / false alarm, defect type).

This module owns the ``labels`` table (schema owner ``labels``, migrated by ``outputs/schema.py``):
one row per review, the latest per part in force, so a changed mind is history, not an overwrite.
The learning loop reads it (``labels_for``). The API writes it on its own connection and thread;
each write is one short transaction, so the store's writer waits at most that long.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from edge_inspector.outputs import schema
from edge_inspector.outputs.store import TABLE as INSPECTIONS

OWNER = TABLE = "labels"
Verdict = Literal["defect", "false_alarm"]
VERDICTS = ("defect", "false_alarm")


def _v1(db: sqlite_utils.Database) -> None:
    db[TABLE].create({"id": int, "part_id": str, "verdict": str, "defect_type": str, "reviewer": str,
                      "note": str, "created": float}, pk="id", not_null={"part_id", "verdict", "created"})
    db[TABLE].create_index(["part_id"])


MIGRATIONS = [_v1]


def migrate(db: sqlite_utils.Database, path: Path) -> int:
    return schema.migrate(db, path, OWNER, MIGRATIONS)


class UnknownPart(LookupError):
    """No inspection with this part id: a label is always about an inspection that exists."""


def add_label(db: sqlite_utils.Database, part_id: str, verdict: Verdict, defect_type: str | None = None,
              reviewer: str = "", note: str = "") -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
    if not db.execute(f"SELECT 1 FROM {INSPECTIONS} WHERE part_id = ?", [part_id]).fetchone():
        raise UnknownPart(part_id)
    row = {"part_id": part_id, "verdict": verdict,
           "defect_type": (defect_type or None) if verdict == "defect" else None,
           "reviewer": reviewer, "note": note, "created": time.time()}
    row["id"] = db[TABLE].insert(row).last_pk  # one statement: autocommit, a short write lock
    return row


def labels_for(db: sqlite_utils.Database, part_id: str) -> list[dict[str, Any]]:
    if TABLE not in db.table_names():
        return []
    return list(db.query(f"SELECT * FROM {TABLE} WHERE part_id = ? ORDER BY id", [part_id]))
