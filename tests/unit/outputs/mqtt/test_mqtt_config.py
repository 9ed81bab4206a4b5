import pytest

from edge_inspector.config import load_config
from edge_inspector.errors import ConfigError
from edge_inspector.outputs.mqtt.topics import Topics


def test_off_by_default_and_on_with_a_host():
    assert not load_config(None).mqtt.active
    cfg = load_config(None, ["mqtt.host=127.0.0.1", "mqtt.port=18999", "station.name=line-3"])
    assert cfg.mqtt.active and cfg.mqtt.port == 18999
    assert Topics.of(cfg.mqtt.topic_prefix, cfg.station.name).result == "edge-inspector/line-3/result"
    assert not load_config(None, ["mqtt.host=broker", "mqtt.enabled=false"]).mqtt.active


@pytest.mark.parametrize("override,message", [
    ("mqtt.password=hunter2", "env:VARIABLE"),
    ("mqtt.topic_prefix=plant/#", "wildcards"),
    ("mqtt.topic_prefix=/plant", "slash"),
    ("mqtt.port=70000", "mqtt.port"),
    ("mqtt.hots=broker", "unknown key"),
    ("mqtt.tls={cert_file: /c.pem}", "go together"),
    ("mqtt.recipes={'a/b': x.yaml}", "recipe names"),
])
def test_bad_mqtt_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match="mqtt") as exc:
        load_config(None, ["mqtt.host=127.0.0.1", override])
    assert message in str(exc.value)


def test_a_password_needs_a_username():
    with pytest.raises(ConfigError, match="password needs a username"):
        load_config(None, ["mqtt.host=h", "mqtt.password=env:MQTT_PASSWORD"])


def test_secrets_and_tls_files_are_checked_at_startup(tmp_path, monkeypatch):
    from edge_inspector.errors import StartupError
    from edge_inspector.outputs.mqtt.link import build_mqtt

    base = ["mqtt.host=127.0.0.1", f"station.data_dir={tmp_path}", "mqtt.username=station"]
    monkeypatch.delenv("EI_TEST_MQTT_PW", raising=False)
    with pytest.raises(StartupError, match="EI_TEST_MQTT_PW is not set"):
        build_mqtt(load_config(None, base + ["mqtt.password=env:EI_TEST_MQTT_PW"]), lambda: None)
    with pytest.raises(StartupError, match="mqtt.tls.ca_file"):
        build_mqtt(load_config(None, base + [f"mqtt.tls={{ca_file: {tmp_path}/none.pem}}"]), lambda: None)
    (tmp_path / "pw").write_text("s3cret\n")
    link = build_mqtt(load_config(None, base + [f"mqtt.password=file:{tmp_path}/pw"]), lambda: None)
    assert link.publisher._password == "s3cret"
