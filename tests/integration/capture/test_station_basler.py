"""The whole station through the pylon path: the camera emulator serves demo boards (its image-file
feature), a timer fires software triggers, and the daemon rejects the defective boards."""

from __future__ import annotations

import sqlite3

import cv2
import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.synth.pcb import make_board

pytest.importorskip("pypylon")


def emulator_folder(boards, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i, board in enumerate(boards):
        cv2.imwrite(str(folder / f"{i:04d}.png"), board.image)
    return {"TestImageSelector": "Off", "ImageFileMode": "On", "ImageFilename": str(folder)}


def test_station_rejects_defective_boards_through_the_basler_emulator(station_config, design, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("PYLON_CAMEMU", "1")
    kinds = [[], ["short"], [], ["open", "spur"], [], ["pin_hole"], [], []]
    boards = [make_board(design, 900 + i, defects=k) for i, k in enumerate(kinds)]
    features = emulator_folder(boards, tmp_path / "emu")
    cfg = load_config(station_config(
        capture={"kind": "basler", "name": "emu0", "pixel_format": "Mono8", "features": features,
                 "buffer": "wait"},
        triggers={"timer_hz": 10}))
    station = Station.build(cfg)
    assert station.run(max_parts=len(boards), install_signals=False) == 0
    with sqlite3.connect(cfg.db_path) as conn:
        rows = conn.execute("SELECT outcome, reason, camera FROM inspections ORDER BY seq").fetchall()
    assert station.counters.triggers == station.counters.decisions == len(rows) == len(boards)
    assert [r[0] for r in rows] == ["REJECT" if k else "PASS" for k in kinds]
    assert {r[2] for r in rows} == {"emu0"}
