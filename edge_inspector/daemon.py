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
from edge_inspector.plc.lane import Lane
from edge_inspector.service.config import control_socket_path
from edge_inspector.service.control import ControlServer
from edge_inspector.service.handlers import access_for, station_dispatcher
from edge_inspector.service.notify import SystemdNotifier
from edge_inspector.service.reload import Reloader
from edge_inspector.service.retention import Retention
from edge_inspector.stages import build_stages, build_station_stages

def build_units(cfg: Config, stages) -> tuple[list[_station.Unit], dict[str, Config]]:
    """A multi-camera station's units: one per camera, one per view set (its cameras' sources in
    lock step), each with its own trigger bus, part factory (its deadline) and the config its PLC
    lane is built from (the view set's: the one camera of the set that has a lane)."""
    from edge_inspector.capture.viewset import ViewSetSource

    groups: dict[str, list] = {}
    for cam in cfg.cameras or []:
        groups.setdefault(cam.view_set or cam.name, []).append(cam)
    units, lane_cfgs = [], {}
    for name, cams in groups.items():
        cfgs = [stages.config_for(c.name) for c in cams]
        lane = next((c for c in cfgs if c.plc.kind != "none"), cfgs[0])
        bus = TriggerBus()
        view_set = cams[0].view_set is not None
        if view_set:
            source = ViewSetSource(name, [build_source(c.capture, triggers=TriggerBus()) for c in cfgs])
        else:
            source = build_source(cfgs[0].capture, triggers=bus)
        parts = _station.HookedPartFactory(cfgs[0].policy.deadline_ms / 1000)
        units.append(_station.Unit(name, source, parts, bus, tuple(c.name for c in cams),
                                   timer_hz=cfgs[0].triggers.timer_hz, view_set=view_set))
        lane_cfgs[name] = lane
    return units, lane_cfgs


Counters = _station.Counters
HookedPartFactory = _station.HookedPartFactory


class Station(_station.Station):
    """The running station (``station.Station``), with the builder that wires it from a config."""

    @classmethod
    def build(cls, cfg: Config, config_path: str | None = None, overrides: list[str] | None = None
              ) -> Station:
        """Load everything the station needs; a missing device or file raises StartupError.
        ``config_path`` and ``overrides`` are what a reload (SIGHUP, ``ctl reload``) reads again."""
        stages = build_station_stages(cfg)
        try:
            return _wire(cls, cfg, stages, config_path, list(overrides or []))
        except BaseException:
            stages.close()
            raise


def _wire(cls: type[Station], cfg: Config, stages, config_path: str | None, overrides: list[str]
          ) -> Station:
    station: Station | None = None  # the lambdas below read the stages in force once it exists

    def versions():  # the part in hand's, while the worker records it (its camera's recipe)
        return station.part_versions()

    triggers = TriggerBus()  # software-triggered cameras wait on it; timer, PLC, commands fire it
    units = None
    if cfg.multi_camera:  # one unit (capture thread, bus, deadline, lane) per camera or view set
        units, lane_cfgs = build_units(cfg, stages)
        source, triggers = None, units[0].triggers
    else:
        source = build_source(cfg.capture, triggers=triggers)
    data = Path(cfg.station.data_dir)
    ret = cfg.service.retention
    images = DiskGuard(RejectImages(cfg.images, data / "rejects", live_cfg=lambda: station.cfg.images,
                                    per_camera=cfg.multi_camera),
                       data, ret.min_free_mb, ret.check_disk_every_s)
    mqtt = None
    if cfg.mqtt.active:  # the result goes into the outbox in the row's transaction (outputs/mqtt)
        from edge_inspector.outputs.mqtt.link import build_mqtt

        mqtt = build_mqtt(cfg, versions)
    store = Store(cfg.db_path, images, versions, writers=[mqtt.outbox] if mqtt else [],
                  wal_max_mb=cfg.service.retention.wal_max_mb)
    try:
        lanes = []  # (unit, link): the PLC links, each the gate of its own parts
        if units is None:
            plc = build_plc(cfg, getattr(source, "triggers", None))  # None without a PLC link
            lanes = [(None, plc)] if plc else []
        else:
            for unit in units:
                link = build_plc(lane_cfgs[unit.name], getattr(unit.source, "triggers", None))
                if link is not None:
                    lanes.append((unit, link))
        gates = [plc if unit is None else Lane(plc, unit.name) for unit, plc in lanes]
        owned = [store, mqtt.output] if mqtt else [store]
        feed = None
        if cfg.api.enabled:  # last: metrics and the live feed see what the gate did and the store kept
            from edge_inspector.api.service import build_feed

            feed = build_feed(cfg.api)
        outputs = Outputs(gates + owned + ([feed] if feed else []),
                          owned=owned)  # the PLC links: their services'
        station = cls(stages, source, outputs, triggers, units=units)
        reloader = Reloader(config_path, overrides, load_config, build_station_stages, station.install,
                            lambda: station.cfg)
        s = cfg.service
        station.dispatcher = station_dispatcher(station, reloader, dict(cfg.mqtt.recipes),
                                                s.watchdog.stuck_after_s, config_path, access_for(cfg))
        for unit, plc in lanes:  # the first outputs; each arms its parts at their trigger
            (station.parts if unit is None else unit.parts).hooks.append(plc.arm)
            service = PlcService(plc, lambda: station.last_progress_mono, lambda: station.recording_fault)
            if unit is not None:
                service.name = f"plc-{unit.name}"
            station.services.add(service)
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
