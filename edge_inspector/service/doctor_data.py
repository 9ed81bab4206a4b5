"""``edge-inspector doctor``'s data checks: the reference images, the model directory (files and
SHA256SUMS hashes), the recipe, the MQTT broker, free disk and the database's integrity."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import struct
from pathlib import Path
from typing import Any

from edge_inspector.service.doctor_types import FAIL, PASS, SKIP, WARN, Options, Result, _err

# --- reference images, model, recipe -----------------------------------------------------------


def check_regions(cfg) -> Result:
    from edge_inspector.regions import build_regions

    try:
        finder = build_regions(cfg.regions)
    except Exception as exc:  # noqa: BLE001
        return Result("reference images", FAIL, _err(exc),
                      "put the product's reference image and known-good images where regions.reference and "
                      "regions.good_images point (`edge-inspector config check` shows the paths)")
    source = cfg.regions.reference or cfg.regions.good_images
    where = Path(source).name if source else "no reference (each part brings its own)"
    return Result("reference images", PASS, f"{cfg.regions.kind}: {where}, "
                  f"model {getattr(finder, 'fingerprint', '?')}")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sums(model_dir: Path) -> tuple[str, str, str]:
    """(result, detail, fix) for the SHA256SUMS manifest in a model directory."""
    manifest = next((model_dir / n for n in ("SHA256SUMS", "sha256sums.txt") if (model_dir / n).is_file()), None)
    if manifest is None:
        return (WARN, "no SHA256SUMS: the files' integrity cannot be verified",
                f"when the model is installed: `cd {model_dir} && sha256sum *.json *.safetensors > SHA256SUMS`")
    bad, missing, n = [], [], 0
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        f = model_dir / name
        n += 1
        if not f.is_file():
            missing.append(name)
        elif sha256_file(f) != digest.lower():
            bad.append(name)
    if missing or bad:
        what = ", ".join([*(f"{m} missing" for m in missing), *(f"{b} changed" for b in bad)])
        return (FAIL, f"{manifest.name}: {what}",
                "copy the model directory again from the release (the files were damaged or replaced)")
    return PASS, f"{n} files match {manifest.name}", ""


def check_model(cfg, opts: Options) -> Result:
    model_dir = getattr(cfg.judge, "model_dir", None)
    if model_dir is None:
        return Result("model directory", SKIP, f"judge {cfg.judge.kind} needs no model directory")
    model_dir = Path(model_dir)
    try:
        from edge_inspector.judge.vlm.loading import inspect_checkpoint

        info = inspect_checkpoint(model_dir)
    except Exception as exc:  # noqa: BLE001
        return Result("model directory", FAIL, _err(exc),
                      "install the model directory named by judge.model_dir (see docs/operations.md)")
    detail = f"{model_dir}: {info.family}{' AWQ' if info.awq else ''}, {len(info.weight_files)} weight files"
    if not opts.hashes:
        return Result("model directory", PASS, detail + " (hashes not checked: --no-hashes)")
    result, sums, fix = verify_sums(model_dir)
    return Result("model directory", result, f"{detail}; {sums}", fix)


def check_recipe(cfg) -> Result:
    path = getattr(cfg.judge, "recipe", None)
    if path is None:
        return Result("recipe", SKIP, f"judge {cfg.judge.kind} uses no recipe")
    try:
        from edge_inspector.recipe import load_recipe

        recipe = load_recipe(path)
    except Exception as exc:  # noqa: BLE001
        return Result("recipe", FAIL, _err(exc), "fix the recipe file (the message names the key)")
    missing = [str(r) for r in recipe.references if not Path(r).is_file()]
    if missing:
        return Result("recipe", FAIL, f"{path}: reference images missing: {', '.join(missing)}",
                      "copy the reference images next to the recipe, where it names them")
    return Result("recipe", PASS, f"{path}: {recipe.product}, {len(recipe.defects)} defect types")


# --- MQTT broker -------------------------------------------------------------------------------


def broker_settings(cfg, opts: Options) -> tuple[str | None, int, dict[str, Any]]:
    if opts.broker:
        host, _, port = opts.broker.rpartition(":") if ":" in opts.broker else (opts.broker, "", "1883")
        return host, int(port or 1883), {}
    sec = getattr(cfg, "mqtt", None)
    if sec is None or getattr(sec, "enabled", True) is False or not getattr(sec, "host", None):
        return None, 1883, {}
    extra = {k: getattr(sec, k, None) for k in ("username", "password", "tls")}
    return str(sec.host), int(getattr(sec, "port", 1883) or 1883), extra


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def mqtt_connect(host: str, port: int, timeout_s: float = 3.0, username: str | None = None,
                 password: str | None = None) -> int:
    """An MQTT 3.1.1 CONNECT / CONNACK / DISCONNECT. Returns the CONNACK return code (0: accepted)."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    var = _mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 10)
    payload = _mqtt_str(f"edge-inspector-doctor-{os.getpid()}")
    payload += (_mqtt_str(username) if username else b"") + (_mqtt_str(password) if password else b"")
    body = var + payload
    length, rem = b"", len(body)
    while True:
        byte, rem = rem % 128, rem // 128
        length += bytes([byte | (0x80 if rem else 0)])
        if not rem:
            break
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(b"\x10" + length + body)
        answer = b""
        while len(answer) < 4:
            chunk = sock.recv(4 - len(answer))
            if not chunk:
                raise ConnectionError("the broker closed the connection without a CONNACK")
            answer += chunk
        if answer[0] != 0x20:
            raise ConnectionError(f"not an MQTT broker (answered 0x{answer[0]:02x})")
        if answer[3] == 0:
            sock.sendall(b"\xe0\x00")
        return answer[3]


_CONNACK = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
            4: "bad user name or password", 5: "not authorized"}


def check_broker(cfg, opts: Options) -> Result:
    host, port, extra = broker_settings(cfg, opts)
    if host is None:
        return Result("MQTT broker", SKIP, "no broker configured")
    if extra.get("tls"):
        try:
            socket.create_connection((host, port), timeout=opts.timeout_s).close()
        except OSError as exc:
            return Result("MQTT broker", FAIL, f"{host}:{port}: {exc}", "check the broker's address and the "
                          "network (`ping`, firewall)")
        return Result("MQTT broker", PASS, f"{host}:{port}: reachable (TLS: handshake not checked)")
    creds: dict[str, str | None] = {}
    try:
        from edge_inspector.config_base import reveal_secret

        for k in ("username", "password"):
            v = extra.get(k)
            creds[k] = reveal_secret(v) if isinstance(v, str) and v.partition(":")[0] in ("env", "file") else v
    except ValueError as exc:
        return Result("MQTT broker", FAIL, f"credentials: {exc}", "provide the secret (environment or "
                      "/run/secrets file) the config names")
    try:
        rc = mqtt_connect(host, port, opts.timeout_s, creds.get("username"), creds.get("password"))
    except OSError as exc:
        return Result("MQTT broker", FAIL, f"{host}:{port}: {exc}",
                      "is the broker up (`systemctl status mosquitto` on its host)? check the address, "
                      "the port and the firewall; decisions go on meanwhile and MQTT catches up from the outbox")
    if rc:
        return Result("MQTT broker", FAIL, f"{host}:{port}: refused ({_CONNACK.get(rc, rc)})",
                      "check the credentials and the broker's ACL for this station")
    return Result("MQTT broker", PASS, f"{host}:{port}: MQTT connection accepted")


# --- disk and database -------------------------------------------------------------------------


def check_disk(cfg) -> Result:
    from edge_inspector.outputs.images import free_mb

    data = Path(cfg.station.data_dir)
    floor = cfg.service.retention.min_free_mb
    fix_dir = "create it with the right owner: `systemd-tmpfiles --create edge-inspector.conf`"
    if not data.is_dir():
        return Result("free disk", FAIL, f"{data} does not exist", fix_dir)
    if not os.access(data, os.W_OK | os.X_OK):
        return Result("free disk", FAIL, f"{data} is not writable by {os.geteuid()}", fix_dir)
    free = free_mb(data)
    fix = ("free space: lower images.max_total_mb or service.retention.db_max_mb, remove old backups "
           f"({cfg.db_path.name}.bak-*), or a larger disk")
    if free < floor:
        return Result("free disk", FAIL, f"{free:.0f} MB free on {data}, under {floor:g} MB: reject images "
                      "are not being saved", fix)
    if free < 2 * floor:
        return Result("free disk", WARN, f"{free:.0f} MB free on {data} (images stop under {floor:g} MB)", fix)
    return Result("free disk", PASS, f"{free:.0f} MB free on {data}")


def check_database(cfg) -> Result:
    from edge_inspector.outputs.store import SCHEMA_VERSION

    path = cfg.db_path
    if not path.exists():
        return Result("database", PASS, f"{path}: none yet (created at the first start)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            verdict = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            rows = 0
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='inspections'").fetchone():
                rows = conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Result("database", FAIL, f"{path}: {exc}",
                      "if it is not a permission problem, stop the daemon, move the file aside and restore "
                      f"the newest backup ({path.name}.bak-*) or start with a new database")
    if verdict != ["ok"]:
        return Result("database", FAIL, f"{path}: integrity check failed: {'; '.join(verdict[:3])}",
                      "stop the daemon, move the file aside (keep it for the audit), restore the newest backup "
                      f"({path.name}.bak-*) or let the daemon start a new one")
    if version > SCHEMA_VERSION:
        return Result("database", FAIL, f"{path}: schema v{version} is newer than this program's "
                      f"(v{SCHEMA_VERSION})", "install the edge-inspector version that wrote it")
    note = f", will be migrated to v{SCHEMA_VERSION} at the next start (after a backup copy)" \
        if version < SCHEMA_VERSION else ""
    return Result("database", PASS, f"{path}: integrity ok, schema v{version}, {rows} rows{note}")

