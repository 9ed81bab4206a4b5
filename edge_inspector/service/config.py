"""The ``service`` section of the station's config: control socket, watchdog, retention."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge_inspector.config_base import ConfigModel, ConfigPath


class ControlConfig(ConfigModel):
    enabled: bool = Field(True, title="Control socket", description=(
        "Serve the local control socket (live status, pause, resume, reload)."))
    socket: ConfigPath | None = Field(None, description=(
        "The unix socket's path. None: control.sock in station.data_dir (where both the daemon and "
        "the status CLI find it)."))
    group: str | None = Field(None, description=(
        "The socket's group (mode 0660): technicians in this group may use the status CLI and send "
        "commands. None: the daemon's own group."))
    change_users: list[str | int] | None = Field(None, description=(
        "Users (names or uids) who may send the commands that change the station (pause, resume, "
        "reload, recipe) on the socket. None, with change_groups None: any user of the socket."))
    change_groups: list[str | int] | None = Field(None, description=(
        "Groups (names or gids) whose members may send the commands that change the station. None, "
        "with change_users None: any user of the socket."))


class WatchdogConfig(ConfigModel):
    stuck_after_s: float = Field(10.0, gt=0, description=(
        "The inspection loop counts as stuck (systemd's watchdog pings stop, the status CLI says so) "
        "when the judge has been busy with one call, or the worker with one part, for longer than "
        "this. Keep it above the slowest legitimate judge call and below WatchdogSec."))
    status_every_s: float = Field(5.0, gt=0, description=(
        "How often the STATUS line shown by `systemctl status` is refreshed (also on every change of "
        "state)."))


class RetentionConfig(ConfigModel):
    rows_max_age_days: float | None = Field(365.0, gt=0, description=(
        "Inspection rows older than this are deleted. None: kept for ever (mind the disk)."))
    db_max_mb: float | None = Field(4096.0, gt=0, description=(
        "The oldest rows are deleted while the rows take more than this in the database. None: no "
        "size limit."))
    wal_max_mb: float = Field(64.0, gt=0, description=(
        "The database's write-ahead log (inspections.db-wal) may grow past this only while SQLite "
        "cannot checkpoint it (a reader holding an old snapshot, a failing write to the main file): "
        "beyond it the store checks its checkpoint (PRAGMA wal_checkpoint) and reports a checkpoint "
        "that cannot complete as a fault (log store_wal_checkpoint_failing, the store's health, "
        "doctor). Rows go on being recorded in the log meanwhile."))
    prune_every_s: float = Field(3600.0, gt=0, description="How often rows and images are pruned.")
    batch_rows: int = Field(500, ge=1, le=100_000, description=(
        "Rows deleted per transaction, between two parts, so that pruning never delays a decision "
        "by more than a few milliseconds."))
    min_free_mb: float = Field(1024.0, ge=0, description=(
        "Below this much free space on the data directory's filesystem, reject images are no longer "
        "saved (counted as skipped); decisions and rows go on."))
    check_disk_every_s: float = Field(5.0, gt=0, description="How often the free space is measured.")


class ServiceConfig(ConfigModel):
    control: ControlConfig = Field(default_factory=ControlConfig, description="The control socket.")
    allow_pause_pass: bool = Field(False, description=(
        "Must be true, as well as policy.failsafe.paused: PASS, for a paused station to PASS parts "
        "uninspected: pausing may open the gate only when the config says so in both places."))
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig, description=(
        "What counts as stuck for systemd's watchdog (WatchdogSec= in the unit sets the ping period)."))
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description=(
        "Pruning of old rows, and the disk guard for reject images."))


def control_socket_path(cfg) -> Path:
    """Where the control socket of the station with this config lives."""
    return Path(cfg.service.control.socket or Path(cfg.station.data_dir) / "control.sock")
