"""The daemon, built from a config: the one place where the station's parts are wired together.

    stages (stages.build_stages) -> source -> reject images behind the disk guard -> MQTT outbox ->
    store -> PLC link -> outputs -> Station (station.py) -> command table -> services

The services, in start order: ``plc`` (first: it arms every part at its trigger), ``mqtt``,
``retention``, ``reload``, ``control`` (the socket, when enabled), ``api`` (HTTP, when enabled),
``systemd`` (last: READY=1 goes out when everything else is up). They are stopped in the reverse order, after the worker has drained.
Nothing below this module imports it: each part is handed what it needs.
"""

from __future__ import annotations

from pathlib import Path

from edge_inspector import station as _station
from edge_inspector.capture import build_source
from edge_inspector.capture.triggers import TriggerBus
from edge_inspector.config import Config, load_config
from edge_inspector.outputs import Outputs
from edge_inspector.outputs.images import DiskGuard, RejectImages
from edge_inspector.outputs.store import Store
from edge_inspector.plc import PlcService, build_plc
from edge_inspector.service.config import control_socket_path
from edge_inspector.service.control import ControlServer
from edge_inspector.service.handlers import access_for, station_dispatcher
from edge_inspector.service.notify import SystemdNotifier
from edge_inspector.service.reload import Reloader
from edge_inspector.service.retention import Retention
from edge_inspector.stages import build_stages

Counters = _station.Counters
HookedPartFactory = _station.HookedPartFactory


class Station(_station.Station):
    """The running station (``station.Station``), with the builder that wires it from a config."""

    @classmethod
    def build(cls, cfg: Config, config_path: str | None = None, overrides: list[str] | None = None
              ) -> Station:
        """Load everything the station needs; a missing device or file raises StartupError.
        ``config_path`` and ``overrides`` are what a reload (SIGHUP, ``ctl reload``) reads again."""
        stages = build_stages(cfg)
        try:
            return _wire(cls, cfg, stages, config_path, list(overrides or []))
        except BaseException:
            stages.close()
            raise


def _wire(cls: type[Station], cfg: Config, stages, config_path: str | None, overrides: list[str]
          ) -> Station:
    station: Station | None = None  # the lambdas below read the stages in force once it exists

    def versions():
        return station.versions

    triggers = TriggerBus()  # software-triggered cameras wait on it; timer, PLC, commands fire it
    source = build_source(cfg.capture, triggers=triggers)
    data = Path(cfg.station.data_dir)
    ret = cfg.service.retention
    images = DiskGuard(RejectImages(cfg.images, data / "rejects", live_cfg=lambda: station.cfg.images),
                       data, ret.min_free_mb, ret.check_disk_every_s)
    mqtt = None
    if cfg.mqtt.active:  # the result goes into the outbox in the row's transaction (outputs/mqtt)
        from edge_inspector.outputs.mqtt.link import build_mqtt

        mqtt = build_mqtt(cfg, versions)
    store = Store(cfg.db_path, images, versions, writers=[mqtt.outbox] if mqtt else [],
                  wal_max_mb=cfg.service.retention.wal_max_mb)
    try:
        plc = build_plc(cfg, getattr(source, "triggers", None))  # None without a PLC link
        owned = [store, mqtt.output] if mqtt else [store]
        feed = None
        if cfg.api.enabled:  # last: metrics and the live feed see what the gate did and the store kept
            from edge_inspector.api.service import build_feed

            feed = build_feed(cfg.api)
        outputs = Outputs(([plc] if plc else []) + owned + ([feed] if feed else []),
                          owned=owned)  # the PLC link: its service's
        station = cls(stages, source, outputs, triggers)
        reloader = Reloader(config_path, overrides, load_config, build_stages, station.install,
                            lambda: station.cfg)
        s = cfg.service
        station.dispatcher = station_dispatcher(station, reloader, dict(cfg.mqtt.recipes),
                                                s.watchdog.stuck_after_s, config_path, access_for(cfg))
        if plc is not None:  # the first output; arms each part at its trigger
            station.parts.hooks.append(plc.arm)
            station.services.add(PlcService(plc, lambda: station.last_progress_mono,
                                            lambda: station.recording_fault))
        if mqtt is not None:
            mqtt.publisher.attach(station, station.dispatcher)
            station.services.add(mqtt.publisher)
        station.services.add(Retention(ret, cfg.db_path, images, lambda: station.cfg.images))
        station.services.add(reloader)
        if s.control.enabled:
            station.services.add(ControlServer(control_socket_path(cfg), station.dispatcher, s.control.group))
        if feed is not None:
            from edge_inspector.api.service import ApiService

            station.services.add(ApiService(cfg.api, station, feed, build_stages))
        station.services.add(SystemdNotifier(station, s.watchdog.stuck_after_s, s.watchdog.status_every_s))
        return station
    except BaseException:
        store.close()
        raise
