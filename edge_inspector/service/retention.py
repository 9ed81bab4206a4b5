"""Retention and the disk: old rows pruned by age and size, reject images stopped when space is low.

- Rows older than ``service.retention.rows_max_age_days`` are deleted, then the oldest while the rows
  take more than ``db_max_mb`` (pages in use; SQLite reuses the freed pages, so the file stops
  growing rather than shrinking). The reject images of deleted rows are deleted with them. Each batch
  of ``batch_rows`` runs between two parts on the store's own connection: one writer, and a decision
  is never delayed by more than one batch.
- The reject images keep their own limits (``images.max_age_days``, ``images.max_total_mb``), pruned on
  the same schedule.
- Below ``min_free_mb`` free on the data directory's filesystem, reject images are no longer saved
  (counted, logged once per episode); the decisions and their rows go on. Saving resumes by itself
  once space is back.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector.daemon import Service
from edge_inspector.outputs.store import TABLE

if TYPE_CHECKING:
    from edge_inspector.daemon import Station
    from edge_inspector.envelope import Inspection
    from edge_inspector.service.config import RetentionConfig

log = structlog.get_logger(__name__)


def free_mb(path: Path) -> float:
    """Free space for an unprivileged writer on the filesystem of ``path`` (or its nearest parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 1048576


class DiskGuard:
    """Wraps the reject images: below ``min_free_mb`` free, ``save`` keeps nothing and counts it."""

    def __init__(self, inner, root: Path, min_free_mb: float, every_s: float = 5.0,
                 measure: Callable[[Path], float] = free_mb) -> None:
        self.inner = inner
        self.root = Path(root)
        self.min_free_mb = min_free_mb
        self.every_s = every_s
        self.measure = measure
        self.low = False
        self.free_mb: float | None = None
        self.skipped_disk_low = 0
        self._checked = float("-inf")

    def refresh(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self._checked = now
        try:
            self.free_mb = self.measure(self.root)
        except OSError as exc:
            log.warning("disk_check_failed", path=str(self.root), error=str(exc))
            return self.low
        low = self.free_mb < self.min_free_mb
        if low and not self.low:
            log.error("disk_nearly_full", path=str(self.root), free_mb=round(self.free_mb, 1),
                      min_free_mb=self.min_free_mb, detail="reject images are no longer saved; "
                      "decisions go on")
        elif self.low and not low:
            log.info("disk_space_back", path=str(self.root), free_mb=round(self.free_mb, 1),
                     skipped=self.skipped_disk_low)
        self.low = low
        return low

    def save(self, inspection: Inspection) -> str | None:
        now = time.monotonic()
        if now - self._checked >= self.every_s:
            self.refresh(now)
        if self.low:
            if (self.inner.cfg.keep and inspection.frame.image is not None
                    and inspection.decision.outcome != "PASS"):
                self.skipped_disk_low += 1
            return None
        return self.inner.save(inspection)

    def __getattr__(self, name: str) -> Any:  # prune, saved, skipped_disk_full, cfg, root...
        return getattr(self.inner, name)


def _delete_batch(conn: sqlite3.Connection, where: str, args: list, batch: int) -> int:
    """Delete up to ``batch`` of the oldest rows matching ``where``, and their images."""
    rows = conn.execute(f"SELECT id, image_path FROM {TABLE} WHERE {where} ORDER BY id LIMIT ?",
                        [*args, batch]).fetchall()
    if not rows:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(f"DELETE FROM {TABLE} WHERE id = ?", [(r[0],) for r in rows])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    for _, image in rows:
        if image:
            Path(image).unlink(missing_ok=True)
    return len(rows)


def used_mb(conn: sqlite3.Connection) -> float:
    """Space the data takes in the database (pages in use, not the free list)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size / 1048576


def prune_rows(conn: sqlite3.Connection, max_age_days: float | None, max_mb: float | None, batch: int,
               now: float | None = None, run: Callable[[Callable[[], Any]], Any] | None = None) -> int:
    """Delete rows by age, then the oldest by size. ``run(fn)`` runs each batch (between two parts in
    the daemon; directly by default). Returns the rows deleted."""
    now = time.time() if now is None else now
    removed = 0
    result: list[int] = []

    def one(where: str, args: list) -> int:
        result.clear()
        step = lambda: result.append(_delete_batch(conn, where, args, batch))  # noqa: E731
        run(step) if run else step()
        return result[0] if result else 0

    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    if TABLE not in tables:
        return 0
    if max_age_days is not None:
        cutoff = now - max_age_days * 86400
        while (n := one("trigger_time < ?", [cutoff])) > 0:
            removed += n
    if max_mb is not None:
        while used_mb(conn) > max_mb and (n := one("1", [])) > 0:
            removed += n
    return removed


class Retention(Service):
    """Prunes rows and images on a schedule; guards the reject images against a full disk."""

    name = "retention"

    def __init__(self, cfg: RetentionConfig) -> None:
        self.cfg = cfg
        self.guard: DiskGuard | None = None
        self._store = None
        self._station: Station | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.rows_pruned = 0
        self.images_pruned = 0
        self.last_prune: float | None = None

    def start(self, station: Station) -> None:
        self._station = station
        self._store = next((o for o in station.outputs.outputs if hasattr(o, "db") and hasattr(o, "images")),
                           None)
        if self._store is not None and self._store.images is not None:
            self.guard = DiskGuard(self._store.images, Path(station.cfg.station.data_dir),
                                   self.cfg.min_free_mb, self.cfg.check_disk_every_s)
            self.guard.refresh()
            self._store.images = self.guard
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_prune = time.monotonic() + 1.0  # soon after start, not in the way of the first parts
        while not self._done.wait(min(self.cfg.check_disk_every_s, 1.0)):
            now = time.monotonic()
            if self.guard is not None and now - self.guard._checked >= self.cfg.check_disk_every_s:
                self.guard.refresh(now)
            if now >= next_prune:
                self.prune()
                next_prune = time.monotonic() + self.cfg.prune_every_s

    def prune(self) -> int:
        station, store = self._station, self._store
        removed = 0
        if store is not None and station is not None:
            try:
                removed = prune_rows(store.db.conn, self.cfg.rows_max_age_days, self.cfg.db_max_mb,
                                     self.cfg.batch_rows, run=self._between)
            except sqlite3.Error as exc:
                log.error("row_pruning_failed", error=str(exc))
            if removed:
                self.rows_pruned += removed
                log.info("rows_pruned", removed=removed)
            images = getattr(store, "images", None)
            if images is not None:
                try:
                    self.images_pruned += images.prune()
                except OSError as exc:
                    log.error("image_pruning_failed", error=str(exc))
        self.last_prune = time.time()
        return removed

    def _between(self, fn: Callable[[], Any]) -> None:
        if self._done.is_set() or self._station.stop.is_set():
            raise sqlite3.OperationalError("the station is stopping")
        self._station.between_parts(fn)

    def status(self) -> dict[str, Any]:
        g = self.guard
        inner = g.inner if g is not None else None
        return {"disk_free_mb": None if g is None or g.free_mb is None else round(g.free_mb, 1),
                "disk_low": bool(g and g.low), "min_free_mb": self.cfg.min_free_mb,
                "images_saved": getattr(inner, "saved", 0),
                "images_skipped_disk_low": g.skipped_disk_low if g else 0,
                "images_skipped_write_error": getattr(inner, "skipped_disk_full", 0),
                "rows_pruned": self.rows_pruned, "images_pruned": self.images_pruned,
                "last_prune": self.last_prune}

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(10)
