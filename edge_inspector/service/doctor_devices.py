"""``edge-inspector doctor``'s device checks: the camera, the GPU, the serial port and the bridge
handshake. While the daemon runs it holds the camera and the serial port: those rows then report the
daemon's live view of them instead of opening the devices."""

from __future__ import annotations

import os
import secrets
import select
import shutil
import stat
import subprocess
import termios
import time
from pathlib import Path

from edge_inspector.service.doctor_types import FAIL, PASS, SKIP, WARN, Options, Result, _err

# --- camera ------------------------------------------------------------------------------------


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

