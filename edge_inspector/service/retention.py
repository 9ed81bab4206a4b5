"""Retention and the disk: old rows pruned by age and size, reject images by age and total size,
reject images stopped when space is low. One owner of all pruning, on its own thread and its own
SQLite connection (opened in setup and closed in teardown on that thread: no other thread uses it,
and the store's connection is never touched from here).

- Rows older than ``service.retention.rows_max_age_days`` are deleted, then the oldest while the rows
  take more than ``db_max_mb`` (pages in use; SQLite reuses the freed pages, so the file stops
  growing rather than shrinking), with their reject images, ``batch_rows`` per short transaction.
- Reject images keep their own limits (``images.max_age_days``, ``images.max_total_mb``), pruned on
  the same schedule and after every ``images.prune_every`` saved images; a row whose image is
  deleted forgets it (``image_path`` NULL) first (``service/prune.py``).
- Below ``min_free_mb`` free on the data directory's filesystem, reject images are no longer saved
  (``outputs.images.DiskGuard``: counted, logged once per episode); the decisions and their rows go
  on. Saving resumes by itself once space is back.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector.lifecycle import Service
from edge_inspector.outputs.images import DiskGuard, RejectImagesConfig
from edge_inspector.service.prune import prune_images, prune_rows

if TYPE_CHECKING:
    from edge_inspector.service.config import RetentionConfig

log = structlog.get_logger(__name__)

FIRST_PRUNE_S = 1.0  # soon after the start, not in the way of the first parts


class Retention(Service):
    """Prunes rows and images on a schedule; measures the disk for the reject images' guard."""

    name = "retention"

    def __init__(self, cfg: RetentionConfig, db_path: Path, guard: DiskGuard | None,
                 images_cfg: Callable[[], RejectImagesConfig]) -> None:
        super().__init__()
        self.cfg = cfg
        self.db_path = Path(db_path)
        self.guard = guard
        self.images_cfg = images_cfg
        self._conn: sqlite3.Connection | None = None
        self.rows_pruned = 0
        self.images_pruned = 0
        self.last_prune: float | None = None

    def setup(self) -> None:
        self._conn = sqlite3.connect(str(self.db_path), timeout=10, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=10000")
        if self.guard is not None:
            self.guard.refresh()

    def teardown(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run_loop(self) -> None:
        next_prune = time.monotonic() + FIRST_PRUNE_S
        saved_at_prune = self.guard.saved if self.guard is not None else 0
        while not self.wait(min(self.cfg.check_disk_every_s, 1.0)):
            now = time.monotonic()
            g = self.guard
            if g is not None and now - g.checked_mono >= self.cfg.check_disk_every_s:
                g.refresh(now)
            many = g is not None and g.saved - saved_at_prune >= self.images_cfg().prune_every
            if now >= next_prune or many:
                saved_at_prune = g.saved if g is not None else 0
                self.prune()
                next_prune = time.monotonic() + self.cfg.prune_every_s

    def prune(self) -> int:
        """One pass over rows and images (on the service's thread). Returns the rows deleted."""
        conn = self._conn
        if conn is None:
            return 0
        removed = 0
        try:
            removed = prune_rows(conn, self.cfg.rows_max_age_days, self.cfg.db_max_mb, self.cfg.batch_rows,
                                 stopping=lambda: self.stopping)
        except sqlite3.Error as exc:
            log.error("row_pruning_failed", error=str(exc))
        if removed:
            self.rows_pruned += removed
            log.info("rows_pruned", removed=removed)
        if self.guard is not None:
            cfg = self.images_cfg()
            try:
                self.images_pruned += prune_images(conn, self.guard.inner.root, cfg.max_age_days,
                                                   cfg.max_total_mb, batch=self.cfg.batch_rows,
                                                   stopping=lambda: self.stopping)
            except (OSError, sqlite3.Error) as exc:
                log.error("image_pruning_failed", error=str(exc))
        self.last_prune = time.time()
        return removed

    def status(self) -> dict[str, Any]:
        g = self.guard
        return {"disk_free_mb": None if g is None or g.free_mb is None else round(g.free_mb, 1),
                "disk_low": bool(g and g.low), "min_free_mb": self.cfg.min_free_mb,
                "images_saved": g.inner.saved if g else 0,
                "images_skipped_disk_low": g.skipped_disk_low if g else 0,
                "images_skipped_write_error": g.inner.skipped_disk_full if g else 0,
                "rows_pruned": self.rows_pruned, "images_pruned": self.images_pruned,
                "last_prune": self.last_prune}
