"""Row and image pruning (one owner, its own connection), and the disk guard for reject images."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from types import SimpleNamespace

import numpy as np

from tests.helpers import wait_until

from edge_inspector.outputs.images import DiskGuard, RejectImages, RejectImagesConfig, frame_path_for
from edge_inspector.outputs.store import Store
from edge_inspector.service.config import RetentionConfig
from edge_inspector.service.prune import prune_images, prune_rows, used_mb
from edge_inspector.service.retention import Retention
from tests.unit.outputs.test_store import inspection


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
    store = Store(tmp_path / "db.sqlite")
    now = time.time()
    fill(store, tmp_path, 100, now - 100 * 86400, 86400)  # one a day, the oldest 100 days ago
    removed = prune_rows(store.db.conn, 30, None, batch=7, now=now)
    left = store.db.execute("SELECT COUNT(*), MIN(trigger_time) FROM inspections").fetchone()
    assert removed == 70 and left[0] == 30 and left[1] >= now - 30 * 86400
    assert not (tmp_path / "img-0.jpg").exists() and (tmp_path / "img-99.jpg").exists()
    store.close()


def test_pruning_stops_between_batches_when_asked(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    fill(store, tmp_path, 50, 0.0, 1)
    asked = iter([False, False, True])
    assert prune_rows(store.db.conn, 30, None, batch=5, stopping=lambda: next(asked)) == 10
    store.close()


def test_prunes_the_oldest_rows_while_over_the_size_limit(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    fill(store, tmp_path, 400, time.time(), 1, blob=10_000)  # about 4 MB
    assert used_mb(store.db.conn) > 3.5
    removed = prune_rows(store.db.conn, None, 1.0, batch=50)
    assert removed > 250 and used_mb(store.db.conn) <= 1.0
    first = store.db.execute("SELECT MIN(part_id) FROM inspections").fetchone()[0]
    assert first == f"p{removed:06d}"  # the oldest went first
    store.close()


def test_no_table_no_work(tmp_path):
    conn = sqlite3.connect(tmp_path / "empty.db")
    assert prune_rows(conn, 1, 1, 10) == 0
    assert prune_images(conn, tmp_path / "none", 1, 1) == 0
    conn.close()


def test_a_row_never_names_an_image_that_pruning_deleted(tmp_path):
    images = RejectImages(RejectImagesConfig(keep_frame=False), tmp_path / "rejects")  # sizes: jpg alone
    store = Store(tmp_path / "db.sqlite", images)
    for _ in range(14):
        store.emit(inspection())
    files = sorted((tmp_path / "rejects").rglob("*.jpg"))
    size = os.path.getsize(files[0])
    for i, f in enumerate(files):  # oldest first, all past the grace for rowless images
        os.utime(f, (time.time() - 100 + i, time.time() - 100 + i))
    orphan = files[0].parent / "orphan.jpg"  # a crash between the row's commit and the unlink
    orphan.write_bytes(b"x" * 10)
    os.utime(orphan, (1, 1))
    young = files[0].parent / "young.jpg"  # its row is still being written
    young.write_bytes(b"x" * 10)
    removed = prune_images(store.db.conn, tmp_path / "rejects", 30, (3.5 * size) / 1048576)
    rows = store.db.execute("SELECT image_path FROM inspections ORDER BY id").fetchall()
    kept = [r[0] for r in rows if r[0]]
    assert removed == 12 and len(kept) == 3  # the orphan and 11 of the oldest rows' images
    assert all(os.path.exists(p) for p in kept)  # every image a row names is there
    assert not orphan.exists() and young.exists()
    assert set(kept) == {str(f) for f in files[-3:]}  # the newest kept
    store.close()


def test_an_image_and_its_frame_are_counted_and_pruned_together(tmp_path):
    images = RejectImages(RejectImagesConfig(), tmp_path / "rejects")
    store = Store(tmp_path / "db.sqlite", images)
    for _ in range(6):
        store.emit(inspection())
    files = sorted((tmp_path / "rejects").rglob("*.jpg"))
    frames = sorted((tmp_path / "rejects").rglob("*.frame.png"))
    assert [frame_path_for(f) for f in files] == frames  # every saved image has its frame
    pair = os.path.getsize(files[0]) + os.path.getsize(frames[0])
    for i, f in enumerate(files):
        for p in (f, frame_path_for(f)):
            os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))
    removed = prune_images(store.db.conn, tmp_path / "rejects", 30, (2.5 * pair) / 1048576)
    assert removed == 4
    left = sorted((tmp_path / "rejects").rglob("*.*"))
    assert left == sorted([*files[-2:], *frames[-2:]])  # the newest two, each with its frame
    store.close()


def test_the_service_prunes_on_its_own_connection_after_enough_saves(tmp_path):
    data = tmp_path / "data"
    guard = DiskGuard(RejectImages(RejectImagesConfig(), data / "rejects"), data, 0, 0.01)
    store = Store(data / "i.db", guard)
    cfg = RejectImagesConfig(max_total_mb=0.000001, prune_every=3)
    svc = Retention(RetentionConfig(prune_every_s=3600, check_disk_every_s=0.01), data / "i.db", guard,
                    lambda: cfg)
    svc.start()
    try:
        for _ in range(3):
            store.emit(inspection())
        assert wait_until(lambda: svc.images_pruned > 0, 10)  # 3 saves, long before the schedule
        thread = next(t for t in __import__("threading").enumerate() if t.name == "retention")
        assert thread is not __import__("threading").current_thread()
    finally:
        svc.stop()
    assert svc._conn is None and not svc.running  # closed by its own thread, in teardown
    rows = store.db.execute("SELECT image_path FROM inspections").fetchall()
    assert all(p is None or os.path.exists(p) for (p,) in rows)
    store.close()


class Images:
    def __init__(self):
        self.cfg = SimpleNamespace(keep=True)
        self.saved = 0

    def save(self, inspection):
        self.saved += 1
        return "/x.jpg"


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
    assert guard.save(reject()) == "/x.jpg" and not guard.low and guard.saved == 2
