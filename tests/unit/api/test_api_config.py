"""The api section: loopback by default; any other host without a token is refused at load."""

from __future__ import annotations

import pytest

from edge_inspector.config import load_config
from edge_inspector.errors import ConfigError


def test_defaults_are_off_and_loopback():
    cfg = load_config(None)
    assert cfg.api.enabled is False and cfg.api.host == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "station.local", "10.0.0.5"])
def test_a_host_off_loopback_without_a_token_is_refused_by_name(host):
    with pytest.raises(ConfigError, match=r"api\.host .*not loopback.*api\.token"):
        load_config(None, ["api.enabled=true", f"api.host={host}"])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    assert load_config(None, ["api.enabled=true", f"api.host={host}"]).api.host == host


def test_off_loopback_with_a_token_and_the_token_is_a_secret_reference():
    cfg = load_config(None, ["api.enabled=true", "api.host=0.0.0.0", "api.token=env:API_TOKEN"])
    assert cfg.api.token == "env:API_TOKEN"
    with pytest.raises(ConfigError, match="api.token"):
        load_config(None, ["api.token=literal-secret"])
