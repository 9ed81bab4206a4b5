"""The units as systemd sees them: verify, the security score, sysusers + tmpfiles into a scratch root,
the udev rule's shape, and `make install` into a staging directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UNITS = ROOT / "systemd"
INSTALLED_BIN = "/opt/edge-inspector/venv/bin/edge-inspector"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze missing (apt-get install systemd; "
                                          "tools/install_system_deps.sh does it)")


@needs_analyze
def test_systemd_analyze_verify_the_unit(tmp_path):
    # verify checks that ExecStart exists: point it at this checkout's program, as `make install
    # PREFIX=...` does with the installed one; everything else is the file as shipped
    exe = Path(sys.executable).parent / "edge-inspector"
    assert exe.exists()
    text = (UNITS / "edge-inspector.service").read_text()
    assert INSTALLED_BIN in text
    unit = tmp_path / "edge-inspector.service"
    unit.write_text(text.replace(INSTALLED_BIN, str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "edge-inspector.service" not in r.stderr, r.stderr  # no warnings about our unit either


@needs_analyze
def test_security_exposure_is_at_most_2_0():
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        str(UNITS / "edge-inspector.service")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.search(r"Overall exposure level for edge-inspector\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-2000:]
    assert float(m.group(1)) <= 2.0, r.stdout


def test_the_unit_has_what_the_floor_needs():
    text = (UNITS / "edge-inspector.service").read_text()
    for line in ("Type=notify", "Restart=on-failure", "StartLimitBurst=", "WatchdogSec=", "User=edge-inspector",
                 "SupplementaryGroups=dialout video render", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/edge-inspector", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "ProtectHome=yes", "RestrictAddressFamilies=", "SystemCallFilter=@system-service",
                 "ExecReload=/bin/kill -HUP $MAINPID", "DeviceAllow=char-ttyUSB rw"):
        assert line in text, line


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers / systemd-tmpfiles missing")
def test_sysusers_and_tmpfiles_make_the_user_and_the_data_directory(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    (root / "usr/lib/tmpfiles.d").mkdir(parents=True)
    shutil.copy(UNITS / "edge-inspector.sysusers.conf", root / "usr/lib/sysusers.d/edge-inspector.conf")
    shutil.copy(UNITS / "edge-inspector.tmpfiles.conf", root / "usr/lib/tmpfiles.d/edge-inspector.conf")
    r = subprocess.run(["systemd-sysusers", f"--root={root}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    passwd = (root / "etc/passwd").read_text()
    user = next(line for line in passwd.splitlines() if line.startswith("edge-inspector:"))
    uid = int(user.split(":")[2])
    assert user.endswith(":/var/lib/edge-inspector:/usr/sbin/nologin")
    groups = (root / "etc/group").read_text()
    for g in ("dialout", "video", "render"):
        assert re.search(rf"^{g}:x:\d+:.*edge-inspector", groups, re.M), groups
    r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    st = os.stat(root / "var/lib/edge-inspector")
    assert st.st_uid == uid and oct(st.st_mode & 0o777) == "0o750"
    assert (root / "var/lib/edge-inspector/rejects").is_dir()


def test_the_udev_rule_names_the_bridge_and_keeps_modemmanager_away():
    lines = [line for line in (UNITS / "99-edge-inspector-bridge.rules").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    matches = [line for line in lines if "SYMLINK+=" in line]
    assert matches
    for line in matches:
        keys = dict(re.findall(r'(\w+(?:\{\w+\})?)[=!+]=?"([^"]*)"', line))
        assert re.fullmatch(r"[0-9a-f]{4}", keys["ATTRS{idVendor}"]) and re.fullmatch(r"[0-9a-f]{4}",
                                                                                      keys["ATTRS{idProduct}"])
        assert keys["SYMLINK"] == "edge-inspector-bridge" and keys["GROUP"] == "dialout"
        assert keys["ENV{ID_MM_DEVICE_IGNORE}"] == "1"
    assert any(line.startswith("LABEL=") for line in lines)


@pytest.mark.skipif(shutil.which("make") is None, reason="make missing")
def test_make_install_into_a_staging_directory(tmp_path):
    stage = tmp_path / "stage"
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={stage}", "INSTALL_VENV=0", "PREFIX=/srv/ei"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    unit = (stage / "etc/systemd/system/edge-inspector.service").read_text()
    assert "ExecStart=/srv/ei/venv/bin/edge-inspector run --config /etc/edge-inspector/station.yaml" in unit
    for path in ("usr/lib/sysusers.d/edge-inspector.conf", "usr/lib/tmpfiles.d/edge-inspector.conf",
                 "etc/udev/rules.d/99-edge-inspector-bridge.rules", "etc/edge-inspector/station.yaml",
                 "usr/local/share/doc/edge-inspector/operations.md"):
        assert (stage / path).is_file(), path
    # a second install never overwrites the station's config
    (stage / "etc/edge-inspector/station.yaml").write_text("# edited on site\n")
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={stage}", "INSTALL_VENV=0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and (stage / "etc/edge-inspector/station.yaml").read_text() == "# edited on site\n"
