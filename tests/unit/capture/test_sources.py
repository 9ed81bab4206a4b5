import threading

import cv2
import numpy as np
import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.capture.demo import DemoSource, DemoSourceConfig
from edge_inspector.capture.folder import FolderSource, FolderSourceConfig
from edge_inspector.errors import StartupError


def test_folder_replays_every_image_in_order_and_corrupt_ones_as_errors(tmp_path):
    img = np.full((32, 32), 77, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "b.jpg").write_bytes(cv2.imencode(".jpg", img)[1].tobytes()[:100])
    (tmp_path / "c.png").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "d.png"), img)
    (tmp_path / "notes.txt").write_text("not a part")
    src = FolderSource(FolderSourceConfig(path=tmp_path))
    src.open()
    frames = list(src.frames(PartFactory(1.0), threading.Event()))
    assert [f.source.rsplit("/", 1)[1] for f in frames] == ["a.png", "b.jpg", "c.png", "d.png"]
    assert [f.readable for f in frames] == [True, False, False, True]
    assert "truncated JPEG" in frames[1].error and "empty file" in frames[2].error
    assert len({f.part_id for f in frames}) == 4


def test_folder_that_is_missing_or_empty_is_a_startup_error(tmp_path):
    with pytest.raises(StartupError, match="is not a folder"):
        FolderSource(FolderSourceConfig(path=tmp_path / "nope")).open()
    with pytest.raises(StartupError, match="no images"):
        FolderSource(FolderSourceConfig(path=tmp_path)).open()


def test_demo_source_is_deterministic_and_carries_truth():
    cfg = DemoSourceConfig(seed=42, defect_rate=0.5)
    stop = threading.Event()

    def take(n):
        out = []
        for f in DemoSource(cfg).frames(PartFactory(1.0), stop):
            out.append(f)
            if len(out) == n:
                return out

    a, b = take(6), take(6)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert any(f.meta["truth"] for f in a) and any(not f.meta["truth"] for f in a)


def test_part_ids_are_unique_and_ordered():
    parts = PartFactory(0.5, run_tag="run")
    ids = [parts.trigger("c").part_id for _ in range(3)]
    assert ids == ["run-000001", "run-000002", "run-000003"]
    t = parts.trigger("c", t_mono=100.0)
    assert t.deadline_mono == 100.5


def test_a_hostile_a_cut_and_a_fifo_image_are_no_reads_and_the_replay_goes_on(tmp_path):
    """Issue 13, items 6 and 7: each bad file is one part with an error, the next file follows."""
    import os

    from tests.unit.test_imageio import hostile_png, textured

    cv2.imwrite(str(tmp_path / "a.png"), np.full((32, 32), 77, np.uint8))
    (tmp_path / "b.png").write_bytes(hostile_png())
    jpg = cv2.imencode(".jpg", textured())[1].tobytes()
    (tmp_path / "c.jpg").write_bytes(jpg[: len(jpg) // 2] + b"\xff\xd9")
    os.mkfifo(tmp_path / "d.png")
    cv2.imwrite(str(tmp_path / "e.png"), np.full((32, 32), 77, np.uint8))
    src = FolderSource(FolderSourceConfig(path=tmp_path))
    src.open()
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(frames=list(src.frames(PartFactory(1.0),
                                                                          threading.Event()))),
                         daemon=True)
    t.start()
    t.join(60)  # generous: a FIFO read would block for ever
    if t.is_alive():
        os.close(os.open(tmp_path / "d.png", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the replay blocked")
    frames = box["frames"]
    assert [f.source.rsplit("/", 1)[1] for f in frames] == ["a.png", "b.png", "c.jpg", "d.png", "e.png"]
    assert [f.readable for f in frames] == [True, False, False, False, True]
    assert "60000x60000 pixels is over the limit" in frames[1].error
    assert "truncated JPEG" in frames[2].error
    assert "not a regular file (a FIFO)" in frames[3].error


def test_the_folder_source_takes_its_pixel_limit_from_config(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((100, 100), np.uint8))
    src = FolderSource(FolderSourceConfig(path=tmp_path, max_pixels=9_999))
    src.open()
    (frame,) = list(src.frames(PartFactory(1.0), threading.Event()))
    assert not frame.readable and "over the limit of 9999 pixels" in frame.error
