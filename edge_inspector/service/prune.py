"""Pruning the station's file and its reject images (the retention service runs these, on its own
SQLite connection and thread; nothing else deletes rows or images).

- Rows older than a limit are deleted, then the oldest while the rows take more than a size; the
  reject images of deleted rows go with them. Each batch is one short write transaction, so a
  decision waits at most one batch for the write lock.
- Reject images are deleted by age and total size, oldest first, each with its plain frame
  (``<part>.frame.png``). The database comes first: the row
  that points at an image forgets it (``image_path`` NULL) in a committed transaction before the file
  is unlinked, so no row ever names a deleted image (a crash in between leaves an orphan file, which
  a later pass deletes). A young image without a row yet (its row is being written) is left alone.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from edge_inspector.outputs.images import FRAME_SUFFIX, frame_path_for
from edge_inspector.outputs.store import TABLE

log = structlog.get_logger(__name__)

GRACE_S = 30.0  # an image without a row is younger than this: its row is on its way


def _has_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (TABLE,)).fetchone() is not None


def _write(conn: sqlite3.Connection, sql: str, args: list[tuple]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(sql, args)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _delete_batch(conn: sqlite3.Connection, where: str, args: list, batch: int) -> int:
    """Delete up to ``batch`` of the oldest rows matching ``where``, then their images."""
    rows = conn.execute(f"SELECT id, image_path FROM {TABLE} WHERE {where} ORDER BY id LIMIT ?",
                        [*args, batch]).fetchall()
    if not rows:
        return 0
    _write(conn, f"DELETE FROM {TABLE} WHERE id = ?", [(r[0],) for r in rows])
    for _, image in rows:
        if image:
            Path(image).unlink(missing_ok=True)
            frame_path_for(image).unlink(missing_ok=True)
    return len(rows)


def used_mb(conn: sqlite3.Connection) -> float:
    """Space the data takes in the database (pages in use, not the free list)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size / 1048576


def prune_rows(conn: sqlite3.Connection, max_age_days: float | None, max_mb: float | None, batch: int,
               now: float | None = None, stopping: Callable[[], bool] = lambda: False) -> int:
    """Delete rows by age, then the oldest by size, a batch at a time until done or ``stopping()``.
    Returns the rows deleted."""
    now = time.time() if now is None else now
    if not _has_table(conn):
        return 0
    removed = 0
    if max_age_days is not None:
        cutoff = now - max_age_days * 86400
        while not stopping() and (n := _delete_batch(conn, "trigger_time < ?", [cutoff], batch)) > 0:
            removed += n
    if max_mb is not None:
        while not stopping() and used_mb(conn) > max_mb and (n := _delete_batch(conn, "1", [], batch)) > 0:
            removed += n
    return removed


def _files(root: Path) -> list[tuple[float, int, Path]]:
    """Every file, oldest first; an image's plain frame (``<part>.frame.png``) is counted with its
    image (its size added, deleted with it), a frame whose image is gone as a file of its own."""
    out = []
    for dirpath, _, names in os.walk(root):
        stems = {n.rsplit(".", 1)[0] for n in names if not n.endswith(FRAME_SUFFIX)}
        for name in names:
            if name.endswith(FRAME_SUFFIX) and name[:-len(FRAME_SUFFIX)] in stems:
                continue
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue
            size = st.st_size
            if not name.endswith(FRAME_SUFFIX):
                try:
                    size += frame_path_for(p).stat().st_size
                except OSError:
                    pass
            out.append((st.st_mtime, size, p))
    out.sort()
    return out


def prune_images(conn: sqlite3.Connection, root: Path, max_age_days: float, max_total_mb: float,
                 now: float | None = None, batch: int = 500, grace_s: float = GRACE_S,
                 stopping: Callable[[], bool] = lambda: False) -> int:
    """Delete reject images older than ``max_age_days``, then the oldest while over
    ``max_total_mb``; the rows that named them forget them first. Returns the images deleted."""
    root = Path(root)
    if not root.is_dir():
        return 0
    now = time.time() if now is None else now
    table = _has_table(conn)
    files = _files(root)
    total = sum(f[1] for f in files)
    cap, age_cut = max_total_mb * 1048576, now - max_age_days * 86400
    pending: list[tuple[Path, int | None]] = []

    def flush() -> int:
        ids = [(i,) for _, i in pending if i is not None]
        if ids:
            _write(conn, f"UPDATE {TABLE} SET image_path = NULL WHERE id = ?", ids)
        for p, _ in pending:
            p.unlink(missing_ok=True)
            if not p.name.endswith(FRAME_SUFFIX):
                frame_path_for(p).unlink(missing_ok=True)
        n = len(pending)
        pending.clear()
        return n

    removed = 0
    for mtime, size, path in files:
        if (mtime > age_cut and total <= cap) or stopping():
            break
        row = conn.execute(f"SELECT id FROM {TABLE} WHERE part_id = ? AND image_path = ?",
                           (path.stem, str(path))).fetchone() if table else None
        if row is None and now - mtime < grace_s:
            continue  # no row yet: the worker is writing it
        pending.append((path, row[0] if row else None))
        total -= size
        if len(pending) >= batch:
            removed += flush()
    removed += flush()
    today = time.strftime("%Y-%m-%d", time.localtime(now))
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name == today:
            continue
        # a multi-camera station's <day>/<camera>[/<view>] folders first, then the day's
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [d]:
            try:
                if now - sub.stat().st_mtime > grace_s and not any(sub.iterdir()):
                    sub.rmdir()
            except OSError:
                pass  # a save made it non-empty meanwhile
    if removed:
        log.info("reject_images_pruned", removed=removed, total_mb=round(total / 1048576, 1))
    return removed
