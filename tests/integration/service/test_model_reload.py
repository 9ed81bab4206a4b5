"""`model promote` and `model rollback` against a real daemon (the cheap anomaly judge: what is tested
here is the conversation over the control socket, not the model): a reload the station refuses puts
the pointer back, and a station whose config does not follow `current` is said to."""

from __future__ import annotations

from edge_inspector.cli import main
from edge_inspector.learn.models import Registry
from tests.unit.learn.fake_runs import make_run


def registry_with_two(tmp_path) -> Registry:
    reg = Registry(tmp_path / "models")
    reg.import_run(make_run(tmp_path, "r1"))
    reg.import_run(make_run(tmp_path, "r2"))
    reg.switch("v1")
    return reg


def cli(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_refused_reload_puts_the_pointer_back(station_config, daemon, tmp_path, capsys):
    reg = registry_with_two(tmp_path)
    path = station_config(capture={"interval_ms": 40}, models={"dir": str(reg.root)})
    d = daemon(path)
    d.wait_ready()
    d.wait_decisions(2)
    good = path.read_text()
    cli_config = tmp_path / "cli.yaml"
    cli_config.write_text(good)
    path.write_text(good + "policy:\n  deadline_ms: soon\n")  # the daemon's file no longer loads
    rc, out, err = cli(capsys, "model", "promote", "v2", "--force", "-c", str(cli_config),
                       "--socket", str(d.socket_path))
    assert rc == 1 and out == ""
    assert "the station refused the reload" in err and "deadline_ms" in err
    assert "the pointer is back to v1" in err
    assert reg.current().id == "v1" and reg.pointer()["stack"] == ["v1"]
    assert [e["action"] for e in reg.history()][-2:] == ["promote", "restore"]
    assert d.status()["reload"]["state"] == "refused"

    path.write_text(good)  # the daemon's config is the anomaly judge's: it follows no model version
    rc, out, err = cli(capsys, "model", "promote", "v2", "--force", "-c", str(cli_config),
                       "--socket", str(d.socket_path))
    assert rc == 0, err
    assert "v2 is current (was v1); the station reloaded in" in out
    assert "but serves an unversioned model: its config does not say judge.model_version: current" in out
    rc, out, err = cli(capsys, "model", "rollback", "-c", str(cli_config), "--socket", str(d.socket_path))
    assert rc == 0 and "rollback: v1 is current (was v2)" in out, err
    assert d.status()["reload"]["reloads"] == 2
    assert d.terminate() == 0
