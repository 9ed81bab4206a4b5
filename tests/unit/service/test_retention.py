"""Row pruning by age and size, and the disk guard for reject images."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np

from edge_inspector.outputs.store import Store
from edge_inspector.service.retention import DiskGuard, prune_rows, used_mb


def fill(store: Store, tmp_path, n: int, t0: float, step: float, blob: int = 0) -> None:
    rows = []
    for i in range(n):
        img = tmp_path / f"img-{i}.jpg"
        img.write_bytes(b"x")
        rows.append({"part_id": f"p{i:06d}", "outcome": "REJECT", "action": "REJECT", "reason": "defect",
                     "trigger_time": t0 + i * step, "image_path": str(img), "map": "m" * blob,
                     "boxes": json.dumps([])})
    with store.db.conn:
        store.db["inspections"].insert_all(rows)


def test_prunes_rows_older_than_the_limit_with_their_images(tmp_path):
    store = Store(tmp_path / "db.sqlite", None, "m", "c")
    now = time.time()
    fill(store, tmp_path, 100, now - 100 * 86400, 86400)  # one a day, the oldest 100 days ago
    calls = []
    removed = prune_rows(store.db.conn, 30, None, batch=7, now=now, run=lambda fn: (calls.append(1), fn()))
    left = store.db.execute("SELECT COUNT(*), MIN(trigger_time) FROM inspections").fetchone()
    assert removed == 70 and left[0] == 30 and left[1] >= now - 30 * 86400
    assert len(calls) == 11  # 10 batches of at most 7, then the empty one
    assert not (tmp_path / "img-0.jpg").exists() and (tmp_path / "img-99.jpg").exists()
    store.close()


def test_prunes_the_oldest_rows_while_over_the_size_limit(tmp_path):
    store = Store(tmp_path / "db.sqlite", None, "m", "c")
    fill(store, tmp_path, 400, time.time(), 1, blob=10_000)  # about 4 MB
    assert used_mb(store.db.conn) > 3.5
    removed = prune_rows(store.db.conn, None, 1.0, batch=50)
    assert removed > 250 and used_mb(store.db.conn) <= 1.0
    first = store.db.execute("SELECT MIN(part_id) FROM inspections").fetchone()[0]
    assert first == f"p{removed:06d}"  # the oldest went first
    store.close()


def test_no_table_no_work(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "empty.db")
    assert prune_rows(conn, 1, 1, 10) == 0
    conn.close()


class Images:
    def __init__(self):
        self.cfg = SimpleNamespace(keep=True)
        self.saved = 0

    def save(self, inspection):
        self.saved += 1
        return "/x.jpg"

    def prune(self):
        return 0


def reject():
    return SimpleNamespace(frame=SimpleNamespace(image=np.zeros((2, 2))),
                           decision=SimpleNamespace(outcome="REJECT"))


def test_disk_guard_stops_images_when_the_disk_is_nearly_full_and_resumes(tmp_path):
    free = {"mb": 5000.0}
    inner = Images()
    guard = DiskGuard(inner, tmp_path, min_free_mb=1000, every_s=0.0, measure=lambda p: free["mb"])
    assert guard.save(reject()) == "/x.jpg" and inner.saved == 1
    free["mb"] = 200.0
    assert guard.save(reject()) is None and guard.save(reject()) is None
    assert guard.low and guard.skipped_disk_low == 2 and inner.saved == 1
    free["mb"] = 3000.0
    assert guard.save(reject()) == "/x.jpg" and not guard.low
    assert guard.prune() == 0  # everything else goes to the wrapped images
