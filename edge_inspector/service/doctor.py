"""``edge-inspector doctor``: is this box ready to inspect? One row per check, each failure with what
to do about it.

Checks: the daemon (via its control socket), the cameras, the reference images, the model directory
(files and SHA256SUMS hashes), the recipe, the GPU, the serial port and the bridge handshake, the MQTT
broker, free disk, the database's integrity. While the daemon runs it holds the camera and the serial
port: those rows then report the daemon's live view of them instead of opening the devices.

A check whose part is not configured is SKIP; a WARN does not fail the run; any FAIL makes the
command exit 1.

The checks live in :mod:`~edge_inspector.service.doctor_devices` (camera, GPU, serial port and
bridge) and :mod:`~edge_inspector.service.doctor_data` (reference images, model, recipe, broker,
disk, database); the types in :mod:`~edge_inspector.service.doctor_types`. All are re-exported here.
"""

from __future__ import annotations

from dataclasses import replace

from edge_inspector.service.doctor_data import (
    broker_settings,
    check_broker,
    check_database,
    check_disk,
    check_model,
    check_recipe,
    check_regions,
    mqtt_connect,
    sha256_file,
    verify_sums,
)
from edge_inspector.service.doctor_devices import (
    bridge_handshake,
    check_camera,
    check_gpu,
    check_serial,
    gpu_info,
    link_settings,
    open_serial,
)
from edge_inspector.service.doctor_types import FAIL, PASS, SKIP, WARN, Options, Result

# --- the daemon --------------------------------------------------------------------------------


def check_daemon(cfg, live: dict | None, why: str) -> Result:
    if live is None:
        return Result("daemon", WARN, why,
                      "start it: `systemctl start edge-inspector`; if it does not stay up, "
                      "`journalctl -u edge-inspector -b` says why")
    detail = f"{live['state']}, pid {live['pid']}, up {live['uptime_s']:.0f} s, {live['counters']['decisions']} parts"
    if live.get("state") == "not_recording":
        return Result("daemon", FAIL, f"{detail}: {live.get('detail')}",
                      "free space on station.data_dir's filesystem (or fix the I/O error in the "
                      "journal): every trigger is fail-safed until a row is written again")
    if not live.get("healthy", True):
        return Result("daemon", FAIL, f"{detail}: {live.get('detail')}",
                      "the inspection loop is stuck; systemd's watchdog restarts it, or "
                      "`systemctl restart edge-inspector`; then check the GPU row")
    wal = next((o["wal_fault"] for o in live.get("links") or [] if o.get("wal_fault")), None)
    if wal:
        return Result("daemon", FAIL, f"{detail}: {wal}",
                      "close whatever holds a read transaction open on the database (a sqlite3 shell, "
                      "a backup tool), free disk space; the log grows until it checkpoints again")
    if live.get("paused"):
        return Result("daemon", WARN, f"{detail}; PAUSED (every trigger is a NO-READ)",
                      "`edge-inspector ctl resume` when the work on the station is done")
    return Result("daemon", PASS, detail)


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
    if not cfg.multi_camera:
        results = [check_daemon(cfg, live, why), check_camera(cfg, live), check_regions(cfg),
                   check_model(cfg, opts), check_recipe(cfg), check_gpu(cfg, opts)]
        results += check_serial(cfg, live, opts)
    else:  # each camera's source, regions model and PLC lane, named after the camera
        cams = cfg.camera_configs()
        results = [check_daemon(cfg, live, why)]
        results += [check_camera(cfg, live)] if live is not None else [
            _named(check_camera(c, None), name) for name, c in cams.items()]
        results += [_named(check_regions(c), name) for name, c in cams.items()]
        results += [check_model(cfg, opts), check_recipe(cfg), check_gpu(cfg, opts)]
        lanes = {name: c for name, c in cams.items() if c.plc.kind != "none"}
        results += [_named(r, name) for name, c in lanes.items() for r in check_serial(c, live, opts)] \
            if lanes and not opts.serial else check_serial(cfg, live, opts)
    results += [check_broker(cfg, opts), check_disk(cfg), check_database(cfg)]
    return results


def _named(result: Result, camera: str) -> Result:
    return replace(result, check=f"{result.check} ({camera})")


__all__ = [
    "FAIL", "PASS", "SKIP", "WARN", "Options", "Result", "run_checks",
    # the checks, from doctor_devices and doctor_data
    "bridge_handshake", "broker_settings", "check_broker", "check_camera", "check_daemon", "check_database",
    "check_disk", "check_gpu", "check_model", "check_recipe", "check_regions", "check_serial", "gpu_info",
    "link_settings", "mqtt_connect", "open_serial", "sha256_file", "verify_sums",
]
