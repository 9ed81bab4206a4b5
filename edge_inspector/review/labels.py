"""Review labels: what a person said of one inspection (good / defective, defect type, note, who, when).

This module owns the ``labels`` table (schema owner ``labels``, migrated by ``outputs/schema.py``), for
every door that writes it: ``edge-inspector review label`` and the HTTP API (the page's review
buttons). One row per review, the latest per part in force, so a changed mind is history, not an
overwrite. The learning loop reads it (:func:`latest`). Each write is one short transaction on the
writer's own connection, so the store's writer waits at most that long.

Columns: ``label`` good | defective (v2); ``verdict`` the page's first wording, kept for old readers
(``defect`` for defective, ``false_alarm`` for good; v1 rows have only it, v2 derives ``label`` from
it); ``defect_type`` (defective only); ``reviewer`` who (the OS user for the CLI, what the API was
sent); ``via`` the door (cli, http; empty for v1 rows); ``note``; ``created`` when (unix seconds).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from edge_inspector.outputs import schema
from edge_inspector.outputs.store import TABLE as INSPECTIONS

OWNER = TABLE = "labels"
Label = Literal["good", "defective"]
LABELS = ("good", "defective")
Verdict = Literal["defect", "false_alarm"]
VERDICTS = ("defect", "false_alarm")
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a recipe's defect names (recipe.py)
MAX_NOTE = 500


def _v1(db: sqlite_utils.Database) -> None:
    db[TABLE].create({"id": int, "part_id": str, "verdict": str, "defect_type": str, "reviewer": str,
                      "note": str, "created": float}, pk="id", not_null={"part_id", "verdict", "created"})
    db[TABLE].create_index(["part_id"])


def _v2(db: sqlite_utils.Database) -> None:
    # good / defective in the reviewer's words, whatever the station decided; and the door it came by
    db[TABLE].add_column("label", str)
    db[TABLE].add_column("via", str)
    db.execute(f"UPDATE {TABLE} SET label = CASE verdict WHEN 'defect' THEN 'defective' ELSE 'good' END")


MIGRATIONS = [_v1, _v2]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite_utils.Database, path: Path) -> int:
    return schema.migrate(db, path, OWNER, MIGRATIONS)


class UnknownPart(LookupError):
    """No inspection with this part id: a label is always about an inspection that exists."""


def label_of_verdict(verdict: str) -> Label:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
    return "defective" if verdict == "defect" else "good"


def normal_type(defect_type: str | None) -> str | None:
    """A defect type as a recipe spells it: "Pin hole", "pin-hole" are ``pin_hole``; blank is None."""
    text = re.sub(r"[\s\-]+", "_", (defect_type or "").strip().lower())
    return text or None


def add_label(db: sqlite_utils.Database, part_id: str, label: Label, defect_type: str | None = None,
              reviewer: str = "", note: str = "", via: str = "") -> dict[str, Any]:
    """Store one review of ``part_id`` (the labels table at :data:`SCHEMA_VERSION`: :func:`migrate`
    first). Raises :class:`UnknownPart` for a part the store has no inspection of, ValueError for a
    label or defect type that is not one."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, not {label!r}")
    defect_type = normal_type(defect_type)
    if defect_type is not None:
        if label != "defective":
            raise ValueError("a defect type goes with the label defective only")
        if not TYPE_NAME.match(defect_type):
            raise ValueError(f"defect type {defect_type!r}: lower-case snake_case, as in the recipe")
    if not db.execute(f"SELECT 1 FROM {INSPECTIONS} WHERE part_id = ?", [part_id]).fetchone():
        raise UnknownPart(part_id)
    row = {"part_id": part_id, "label": label, "verdict": "defect" if label == "defective" else "false_alarm",
           "defect_type": defect_type, "reviewer": reviewer, "via": via, "note": (note or "")[:MAX_NOTE],
           "created": time.time()}
    row["id"] = db[TABLE].insert(row).last_pk  # one statement: autocommit, a short write lock
    return row


def _select(db: sqlite_utils.Database) -> str:
    """The columns, v1 rows (no ``label``) read as v2 ones."""
    cols = set(db[TABLE].columns_dict)
    label = "label" if "label" in cols else \
        "CASE verdict WHEN 'defect' THEN 'defective' ELSE 'good' END AS label"
    via = "via" if "via" in cols else "'' AS via"
    return f"id, part_id, {label}, verdict, defect_type, reviewer, {via}, note, created"


def labels_for(db: sqlite_utils.Database, part_id: str) -> list[dict[str, Any]]:
    """Every review of one part, oldest first (the last is in force)."""
    if TABLE not in db.table_names():
        return []
    return list(db.query(f"SELECT {_select(db)} FROM {TABLE} WHERE part_id = ? ORDER BY id", [part_id]))


def latest(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """The label in force for each labelled part (its last review), by part id."""
    if TABLE not in db.table_names():
        return {}
    rows = db.query(f"SELECT {_select(db)} FROM {TABLE} WHERE id IN "
                    f"(SELECT MAX(id) FROM {TABLE} GROUP BY part_id) ORDER BY id")
    return {r["part_id"]: r for r in rows}
