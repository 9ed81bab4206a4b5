"""The control socket served by a real station (not running its loop), through a real socket."""

from __future__ import annotations

import grp
import json
import os
import socket
import stat

import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.service.control import ControlError, ControlServer, request


@pytest.fixture
def station(station_config):
    st = Station.build(load_config(station_config()))
    yield st
    st.inspector.close()
    st.outputs.close()


@pytest.fixture
def server(station, tmp_path):
    reloader = station.services.get("reload")
    reloader.start()
    group = next((g for g in ("dialout", "video", "adm") if _has_group(g)), None)
    srv = ControlServer(tmp_path / "ctl.sock", station.dispatcher, group=group)
    srv.start()
    yield srv
    srv.stop()
    reloader.stop()


def _has_group(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def test_socket_mode_group_and_status(server, station):
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    if server.group:
        assert st.st_gid == grp.getgrnam(server.group).gr_gid
    status = request(server.path, "status")["status"]
    assert status["live"] and status["station"] == "test" and status["queue_depth"] == 0
    assert status["cameras"][0]["name"] == "demo-cam" and status["links"][0]["name"] == "store"
    assert status["model"] == station.inspector.model_hash and status["judge"] == "anomaly"
    assert status["counters"]["decisions"] == 0 and status["reload"]["state"] == "none"


def test_pause_resume(server, station):
    assert request(server.path, "pause") == {"ok": True, "paused": True}
    assert station.paused.is_set() and request(server.path, "status")["status"]["paused"]
    assert request(server.path, "resume") == {"ok": True, "paused": False}
    assert not station.paused.is_set()


def test_several_requests_on_one_connection_and_bad_ones(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(str(server.path))
        s.sendall(b'{"cmd": "pause"}\n\nnot json\n{"cmd": "explode"}\n[1]\n{"cmd": "resume"}\n')
        buf = b""
        while buf.count(b"\n") < 5:
            buf += s.recv(65536)
    answers = [json.loads(line) for line in buf.splitlines()]
    assert answers[0]["ok"] and answers[0]["paused"]
    assert answers[1] == {"ok": False, "error": "not a JSON object"}
    assert not answers[2]["ok"] and "unknown command 'explode'" in answers[2]["error"]
    assert "recipe" in answers[2]["error"]  # the one table, named in full
    assert not answers[3]["ok"]
    assert answers[4] == {"ok": True, "paused": False}


def test_an_endless_line_is_cut_off(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(str(server.path))
        try:
            s.sendall(b"x" * (200 * 1024))
        except OSError:
            pass
        data = s.recv(65536)
    assert b"request longer than" in data
    assert request(server.path, "resume")["ok"]  # the server goes on


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(station, tmp_path):
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a killed daemon leaves
    first = ControlServer(path, station.dispatcher)
    first.start()
    try:
        assert request(path, "status")["ok"]
        second = ControlServer(path, station.dispatcher)
        second.start()  # logs control_socket_failed, serves nothing
        assert not second.serving
        second.stop()
        assert request(path, "status")["ok"]
    finally:
        first.stop()
    assert not path.exists()


def test_client_errors_are_clear(tmp_path):
    with pytest.raises(ControlError, match="no one listens on"):
        request(tmp_path / "none.sock", "status")


def test_the_socket_serves_the_whole_command_table(server, station):
    assert request(server.path, "pause", "changeover")["paused"] is True
    assert station.paused_reason == "changeover"
    status = request(server.path, "status")["status"]
    assert status["paused"] and status["paused_reason"] == "changeover"
    assert request(server.path, "resume") == {"ok": True, "paused": False}
    with pytest.raises(ControlError, match="not in mqtt.recipes"):
        request(server.path, "recipe", "pcb")  # no recipes listed: refused, by the same table as MQTT
    with pytest.raises(ControlError, match="takes no value"):
        request(server.path, "status", "now")
    assert request(server.path, "reload")["detail"].startswith("reload started")
