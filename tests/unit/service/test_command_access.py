"""Who may change the station (issue 13, 10): one check in the command table for every door."""

from __future__ import annotations

import os

import pytest

from edge_inspector.commands import COMMANDS, Access, Peer, Request
from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.errors import ConfigError
from edge_inspector.service.control import ControlError, ControlServer, request
from edge_inspector.service.handlers import access_for


@pytest.fixture
def build(station_config):
    built = []

    def make(**sections):
        st = Station.build(load_config(station_config(**sections)))
        built.append(st)
        return st

    yield make
    for st in built:
        st.inspector.close()
        st.outputs.close()


def test_mqtt_is_read_only_unless_its_commands_are_listed(build):
    station = build()
    reply = station.dispatcher.dispatch(Request("pause", "anonymous", via="mqtt"))
    assert not reply.ok and "not enabled for mqtt" in reply.error
    assert not station.paused.is_set()
    assert station.dispatcher.dispatch(Request("status", via="mqtt")).ok  # reading stays open
    assert station.dispatcher.dispatch(Request("pause", via="SIGHUP")).ok  # the daemon's own door
    station.resume("test")

    listed = build(mqtt={"commands": ["pause"]})
    assert listed.dispatcher.dispatch(Request("pause", via="mqtt")).ok and listed.paused.is_set()
    reply = listed.dispatcher.dispatch(Request("resume", via="mqtt"))
    assert not reply.ok and listed.paused.is_set()


def test_an_unknown_mqtt_command_is_refused_by_name_at_load(station_config):
    with pytest.raises(ConfigError, match="mqtt.commands"):
        load_config(station_config(mqtt={"commands": ["pause", "reboot"]}))


def test_pause_passes_parts_only_when_the_config_says_so_twice(station_config):
    with pytest.raises(ConfigError, match="allow_pause_pass"):
        load_config(station_config(policy={"failsafe": {"paused": "PASS"}}))
    cfg = load_config(station_config(policy={"failsafe": {"paused": "PASS"}},
                                     service={"allow_pause_pass": True}))
    assert cfg.policy.failsafe.paused == "PASS"


def test_socket_changes_only_from_the_users_and_groups_listed(build, tmp_path):
    me = os.getuid()
    other = me + 4242  # a uid that is not this process's
    station = build(service={"control": {"change_users": [other]}})
    srv = ControlServer(tmp_path / "ctl.sock", station.dispatcher)
    srv.start()
    try:
        assert request(srv.path, "status")["status"]["live"]  # reading is open to the socket's users
        with pytest.raises(ControlError, match=f"uid {me} may not pause"):
            request(srv.path, "pause")
        assert not station.paused.is_set()
    finally:
        srv.stop()

    mine = build(service={"control": {"change_groups": [os.getgid()]}})
    srv = ControlServer(tmp_path / "ctl2.sock", mine.dispatcher)
    srv.start()
    try:
        assert request(srv.path, "pause") == {"ok": True, "paused": True}  # the peer's own group
        assert mine.paused.is_set()
    finally:
        srv.stop()


def test_access_by_peer_group_and_unknown_names(station_config):
    access = Access(uids=frozenset({1}), gids=frozenset({50}))
    pause = Request("pause", via="control socket", peer=Peer(1000, 1000, (50,)))
    assert access.refusal(pause, COMMANDS["pause"]) is None  # a supplementary group
    stranger = Request("pause", via="control socket", peer=Peer(1000, 1000, ()))
    assert "may not pause" in access.refusal(stranger, COMMANDS["pause"])
    assert access.refusal(Request("status", peer=stranger.peer), COMMANDS["status"]) is None
    cfg = load_config(station_config(service={"control": {"change_users": ["no-such-user-x9"]}}))
    with pytest.raises(Exception, match="no user 'no-such-user-x9'"):
        access_for(cfg)
