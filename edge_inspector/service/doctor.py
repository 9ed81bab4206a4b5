"""``edge-inspector doctor``: is this box ready to inspect? One row per check, each failure with what
to do about it.

Checks: the daemon (via its control socket), the cameras, the reference images, the model directory
(files and SHA256SUMS hashes), the recipe, the GPU, the serial port and the bridge handshake, the MQTT
broker, free disk, the database's integrity. While the daemon runs it holds the camera and the serial
port: those rows then report the daemon's live view of them instead of opening the devices.

A check whose part is not configured is SKIP; a WARN does not fail the run; any FAIL makes the
command exit 1.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import select
import shutil
import socket
import sqlite3
import stat
import struct
import subprocess
import termios
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    result: str  # PASS | WARN | FAIL | SKIP
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Options:
    serial: str | None = None  # a port to check instead of the config's
    baud: int | None = None
    broker: str | None = None  # host[:port] instead of the config's
    hashes: bool = True  # verify the model's SHA256SUMS
    timeout_s: float = 3.0


def _err(exc: BaseException) -> str:
    return str(exc) if getattr(exc, "exit_code", None) else f"{type(exc).__name__}: {exc}"


# --- the daemon --------------------------------------------------------------------------------


def check_daemon(cfg, live: dict | None, why: str) -> Result:
    if live is None:
        return Result("daemon", WARN, why,
                      "start it: `systemctl start edge-inspector`; if it does not stay up, "
                      "`journalctl -u edge-inspector -b` says why")
    detail = f"{live['state']}, pid {live['pid']}, up {live['uptime_s']:.0f} s, {live['counters']['decisions']} parts"
    if not live.get("healthy", True):
        return Result("daemon", FAIL, f"{detail}: {live.get('detail')}",
                      "the inspection loop is stuck; systemd's watchdog restarts it, or "
                      "`systemctl restart edge-inspector`; then check the GPU row")
    if live.get("paused"):
        return Result("daemon", WARN, f"{detail}; PAUSED (every trigger is a NO-READ)",
                      "`edge-inspector ctl resume` when the work on the station is done")
    return Result("daemon", PASS, detail)


# --- camera, regions, model, recipe ------------------------------------------------------------


def check_camera(cfg, live: dict | None) -> Result:
    kind = cfg.capture.kind
    fix = {"folder": "check capture.path and that the service user may read it",
           "demo": "", "opencv": "check the cable or the stream URL; the service user needs the video group",
           "basler": "check the cable, power and IP; `edge-inspector cameras` lists what is connected"}
    hint = fix.get(kind, "check the camera's cable and power; `edge-inspector cameras` lists what is connected")
    if live is not None:
        bad = [c for c in live.get("cameras", []) if c.get("state") not in ("online", "ok")]
        names = ", ".join(f"{c.get('name')} {c.get('state')}" for c in live.get("cameras", []))
        return Result("camera", FAIL if bad else PASS, f"{kind}: {names} (from the running daemon)", hint if bad else "")
    from edge_inspector.capture import build_source

    try:
        source = build_source(cfg.capture)
        source.open()
        try:
            health = source.health()
        finally:
            source.close()
    except Exception as exc:  # noqa: BLE001 - every failure is a row, never a crash
        return Result("camera", FAIL, f"{kind}: {_err(exc)}", hint)
    state = health.get("state", "?")
    if state not in ("online", "ok"):
        return Result("camera", FAIL, f"{kind} {health.get('name')}: {state}", hint)
    return Result("camera", PASS, f"{kind} {health.get('name')}: opened, {state}")


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


# --- GPU --------------------------------------------------------------------------------------


def gpu_info(timeout_s: float = 10.0) -> tuple[bool, str]:
    """(present, description) from nvidia-smi, or from the device nodes."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,memory.used,memory.total,temperature.gpu",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"nvidia-smi did not answer: {exc}"
        if out.returncode == 0 and out.stdout.strip():
            return True, "; ".join(line.strip() for line in out.stdout.strip().splitlines())
        return False, f"nvidia-smi: {(out.stderr or out.stdout).strip()[:200]}"
    if Path("/dev/nvidia0").exists():
        return True, "/dev/nvidia0 present (no nvidia-smi to say more)"
    return False, "no NVIDIA GPU found (no nvidia-smi, no /dev/nvidia0)"


def check_gpu(cfg, opts: Options) -> Result:
    device = getattr(cfg.judge, "device", None)
    needed = cfg.judge.kind == "vlm" and device in ("auto", "cuda")
    present, info = gpu_info(max(opts.timeout_s, 5.0))
    fix = ("`nvidia-smi` must list the GPU: reinstall the driver's kernel module after a kernel update "
           "(dkms), reboot; the service user needs the video and render groups")
    if present:
        return Result("GPU", PASS, info)
    if not needed:
        return Result("GPU", SKIP, f"not needed (judge {cfg.judge.kind}{f', device {device}' if device else ''}); {info}")
    if device == "auto":
        return Result("GPU", WARN, f"{info}: the VLM judge will run on the CPU, far slower than the takt time",
                      fix)
    return Result("GPU", FAIL, info, fix)


# --- serial port and bridge --------------------------------------------------------------------


def link_settings(cfg, opts: Options) -> tuple[str | None, int, str]:
    """The PLC link's serial port, baud rate and kind (bridge | modbus_rtu): --serial (a bridge),
    else the config's ``plc`` section."""
    if opts.serial:
        return opts.serial, opts.baud or 115200, "bridge"
    sec = getattr(cfg, "plc", None)
    if sec is None or getattr(sec, "kind", "none") == "none" or not getattr(sec, "port", None):
        return None, 115200, "none"
    return str(sec.port), opts.baud or int(getattr(sec, "baud", 115200)), sec.kind


_BAUD = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400, 57600: termios.B57600,
         115200: termios.B115200, 230400: termios.B230400}


def open_serial(port: str, baud: int) -> int:
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[0] = 0  # iflag: raw
        attrs[1] = 0  # oflag
        attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL  # cflag: 8N1
        attrs[3] = 0  # lflag: no echo, no canonical mode
        attrs[4] = attrs[5] = _BAUD.get(baud, termios.B115200)
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 0, 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        termios.tcflush(fd, termios.TCIOFLUSH)
    except termios.error:
        os.close(fd)
        raise
    return fd


def bridge_handshake(port: str, baud: int = 115200, timeout_s: float = 3.0):
    """HELLO -> INFO with our session. Returns the Info message; raises TimeoutError or OSError."""
    from edge_inspector.plc import protocol as p

    session = secrets.randbelow(0xFFFFFFFE) + 1
    fd = open_serial(port, baud)
    try:
        decoder = p.StreamDecoder()
        deadline = time.monotonic() + timeout_s
        next_hello = 0.0
        seq = 0
        while (left := deadline - time.monotonic()) > 0:
            if time.monotonic() >= next_hello:  # again every 0.5 s: a board that resets on open is deaf
                os.write(fd, p.encode_frame(seq, p.Hello(session=session), leading_delimiter=True))
                seq = p.seq_next(seq)
                next_hello = time.monotonic() + 0.5
            ready, _, _ = select.select([fd], [], [], min(left, 0.1))
            if not ready:
                continue
            try:
                data = os.read(fd, 512)
            except BlockingIOError:
                continue
            for frame in decoder.feed(data):
                if isinstance(frame.message, p.Info) and frame.message.session == session:
                    return frame.message
        raise TimeoutError(f"no INFO answer to HELLO within {timeout_s:g} s")
    finally:
        os.close(fd)


def check_serial(cfg, live: dict | None, opts: Options) -> list[Result]:
    port, baud, kind = link_settings(cfg, opts)
    if port is None:
        return [Result("serial port", SKIP, "no PLC bridge configured"),
                Result("bridge handshake", SKIP, "no PLC bridge configured")]
    real = os.path.realpath(port)
    try:
        st = os.stat(port)
    except FileNotFoundError:
        return [Result("serial port", FAIL, f"{port} does not exist",
                       "plug the bridge in; `ls -l /dev/edge-inspector-bridge` (the udev rule names it; "
                       "check its idVendor/idProduct with `udevadm info -a /dev/ttyUSB0`)"),
                Result("bridge handshake", SKIP, "no serial port")]
    if not stat.S_ISCHR(st.st_mode):
        return [Result("serial port", FAIL, f"{port} is not a character device", "point the config at the "
                       "bridge's tty"), Result("bridge handshake", SKIP, "no serial port")]
    if not os.access(port, os.R_OK | os.W_OK):
        return [Result("serial port", FAIL, f"{port} ({real}): no read/write permission",
                       "the service user needs the dialout group (the sysusers.d file adds it); log in again "
                       "after `usermod -aG dialout`"), Result("bridge handshake", SKIP, "port not accessible")]
    port_row = Result("serial port", PASS, f"{port}" + (f" -> {real}" if real != port else "") + f", {baud} baud")
    if kind != "bridge":
        return [port_row, Result("bridge handshake", SKIP, f"plc.kind {kind}: no bridge to greet (the PLC is "
                                 "the Modbus master)")]
    if live is not None and not opts.serial:  # the daemon holds the port: ask it instead
        links = [lk for lk in live.get("links", []) if lk.get("kind") == "bridge"]
        if not links:
            return [port_row, Result("bridge handshake", SKIP, "the daemon reports no bridge link")]
        bad = [lk for lk in links if lk.get("state") != "ready"]
        desc = ", ".join(f"{lk['name']} {lk.get('state')}" + (f" ({lk['last_error']})" if lk.get("last_error")
                         else "") for lk in links)
        return [port_row, Result("bridge handshake", FAIL if bad else PASS, f"{desc} (from the running daemon)",
                                 "check the USB cable and the bridge's power LED; `journalctl -u edge-inspector "
                                 "| grep plc_link_state`" if bad else "")]
    try:
        info = bridge_handshake(port, baud, opts.timeout_s)
    except TimeoutError as exc:
        return [port_row, Result("bridge handshake", FAIL, str(exc),
                                 f"is it the bridge on {port}? the baud rate ({baud})? is the firmware flashed "
                                 "(`make -C firmware_bridge`)? Is another program holding the port?")]
    except Exception as exc:  # noqa: BLE001
        return [port_row, Result("bridge handshake", FAIL, _err(exc), "check the port and the cable")]
    return [port_row, Result("bridge handshake", PASS,
                             f"firmware {info.fw_major}.{info.fw_minor}.{info.fw_patch}, protocol "
                             f"{info.protocol_version}, {info.max_pending} parts pending at most")]


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
    from edge_inspector.service.retention import free_mb

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


# --- all of it ---------------------------------------------------------------------------------


def run_checks(cfg, opts: Options | None = None) -> list[Result]:
    from edge_inspector.service.config import control_socket_path
    from edge_inspector.service.control import ControlError, request

    opts = opts or Options()
    live, why = None, ""
    if cfg.service.control.enabled:
        try:
            live = request(control_socket_path(cfg), "status", timeout=opts.timeout_s)["status"]
        except ControlError as exc:
            why = str(exc)
    else:
        why = "control socket disabled in the config"
    results = [check_daemon(cfg, live, why), check_camera(cfg, live), check_regions(cfg),
               check_model(cfg, opts), check_recipe(cfg), check_gpu(cfg, opts)]
    results += check_serial(cfg, live, opts)
    results += [check_broker(cfg, opts), check_disk(cfg), check_database(cfg)]
    return results


__all__ = ["FAIL", "PASS", "SKIP", "WARN", "Options", "Result", "run_checks"]
