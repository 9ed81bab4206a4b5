"""Reading the store for the API: the inspections, paged and filtered, and one with its evidence.

Each call opens its own read-only connection (SQLite in WAL: readers never block the writer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_inspector.review import labels
from edge_inspector.outputs.store import TABLE, connect

JSON_COLUMNS = ("boxes", "votes", "map", "timings")
LIST_COLUMNS = ("part_id", "seq", "camera", "trigger_time", "decided_time", "outcome", "action", "gate",
                "reason", "detail", "late", "score", "p_defective", "confidence", "defect_type",
                "decided_by", "t_total_ms", "boxes", "image_path")


@dataclass(frozen=True, slots=True)
class Query:
    outcome: str | None = None
    camera: str | None = None
    reason: str | None = None
    since: float | None = None  # trigger_time >= since (unix seconds)
    until: float | None = None  # trigger_time < until
    limit: int = 50
    offset: int = 0


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for col in JSON_COLUMNS:
        if col in row and isinstance(row[col], str):
            try:
                row[col] = json.loads(row[col])
            except json.JSONDecodeError:
                pass
    if "late" in row and row["late"] is not None:
        row["late"] = bool(row["late"])
    row["has_image"] = bool(row.get("image_path"))
    return row


def _tables(db) -> set[str]:
    return set(db.table_names())


def list_inspections(db_path: Path, q: Query) -> dict[str, Any]:
    if not db_path.exists():
        return {"total": 0, "limit": q.limit, "offset": q.offset, "items": []}
    db = connect(db_path, readonly=True)
    try:
        if TABLE not in _tables(db):
            return {"total": 0, "limit": q.limit, "offset": q.offset, "items": []}
        where, args = [], []
        for col, value in (("outcome", q.outcome), ("camera", q.camera), ("reason", q.reason)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if q.since is not None:
            where.append("trigger_time >= ?")
            args.append(q.since)
        if q.until is not None:
            where.append("trigger_time < ?")
            args.append(q.until)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = db.execute(f"SELECT COUNT(*) FROM {TABLE}{clause}", args).fetchone()[0]
        rows = db.query(f"SELECT {', '.join(LIST_COLUMNS)} FROM {TABLE}{clause} ORDER BY id DESC "
                        f"LIMIT ? OFFSET ?", [*args, q.limit, q.offset])
        return {"total": total, "limit": q.limit, "offset": q.offset, "items": [_decode(r) for r in rows]}
    finally:
        db.conn.close()


def get_inspection(db_path: Path, part_id: str) -> dict[str, Any] | None:
    if not db_path.exists():
        return None
    db = connect(db_path, readonly=True)
    try:
        if TABLE not in _tables(db):
            return None
        rows = list(db.query(f"SELECT * FROM {TABLE} WHERE part_id = ?", [part_id]))
        if not rows:
            return None
        row = _decode(rows[0])
        row.pop("id", None)
        row["labels"] = labels.labels_for(db, part_id)
        return row
    finally:
        db.conn.close()


def image_file(db_path: Path, data_dir: Path, part_id: str) -> Path | None:
    """The reject image (with its overlay) of a part, when it is a file under the data directory."""
    row = get_inspection(db_path, part_id)
    if not row or not row.get("image_path"):
        return None
    path = Path(row["image_path"])
    path = path if path.is_absolute() else data_dir / path
    try:
        path = path.resolve(strict=True)
        path.relative_to(data_dir.resolve())
    except (OSError, ValueError):
        return None
    return path if path.is_file() else None
