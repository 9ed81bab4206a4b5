"""SIGHUP (or ``reload`` on the control socket): a new config and recipe, without losing a part.

1. The config file is read again (with the command line's ``--set`` overrides) and validated. A bad
   file is refused with a log line naming the key and the problem; the running config stays.
2. The inspection stages (regions, judge with its recipe, policy) are built from it beside the running
   ones. A failure there (a missing reference image, a broken model directory, a bad recipe) is
   refused the same way.
3. The new stages are swapped in between two parts: the part the worker is on finishes, and is
   recorded, under the old config; every later part is inspected under the new one and recorded
   with the new config and model fingerprints. The old stages are then closed.

Hot-reloaded: ``regions``, ``judge`` (and the recipe file it names), ``policy`` (thresholds, fail-safe
actions, the deadline of the next triggers), ``pipeline.judge_grace_ms``, ``images``, ``logging``.
Not hot-reloaded (they hold devices, files or sockets): ``station``, ``capture``, ``store``,
``service``, ``pipeline.queue_size``; a change there is logged (``reload_needs_restart``) and takes
effect at the next restart; the rest of the new config is applied.

Building the new stages beside the old ones needs memory for both for a moment: a VLM judge that
does not fit twice on the GPU makes the reload fail (refused, the old one stays): restart instead.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector.daemon import Service

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.daemon import Station
    from edge_inspector.pipeline import Inspector

log = structlog.get_logger(__name__)

RESTART_ONLY = ("station", "capture", "store", "service")


def build_inspector(cfg: Config) -> Inspector:
    """The inspection stages for a config (what Station.build makes). Raises on any failure."""
    from edge_inspector.judge import build_judge
    from edge_inspector.pipeline import Inspector
    from edge_inspector.policy import Policy
    from edge_inspector.regions import build_regions

    regions = build_regions(cfg.regions)
    judge = build_judge(cfg.judge, regions.threshold)
    try:
        return Inspector(regions, judge, Policy(cfg.policy), cfg.pipeline.judge_grace_ms / 1000)
    except BaseException:
        judge.close()
        raise


def effective_config(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the sections that need a restart taken from ``old``; and the names of those
    sections that differ (changed in the file, not applied)."""
    changed = [s for s in RESTART_ONLY if getattr(old, s) != getattr(new, s)]
    update: dict[str, Any] = {s: getattr(old, s) for s in RESTART_ONLY}
    if old.pipeline.queue_size != new.pipeline.queue_size:
        changed.append("pipeline.queue_size")
    update["pipeline"] = new.pipeline.model_copy(update={"queue_size": old.pipeline.queue_size})
    return new.model_copy(update=update), changed


class Reloader(Service):
    """Reloads the config on request, one reload at a time, on its own short-lived thread."""

    name = "reload"

    def __init__(self) -> None:
        self._station: Station | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.state: dict[str, Any] = {"state": "none", "reloads": 0, "refused": 0}

    def start(self, station: Station) -> None:
        self._station = station

    def status(self) -> dict[str, Any]:
        return dict(self.state)

    def request_reload(self, why: str = "request") -> bool:
        """Start a reload unless one is running. Returns at once; True when one was started."""
        station = self._station
        if station is None or station.stop.is_set():
            return False
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                log.warning("reload_busy", why=why, detail="a reload is already running")
                return False
            self._thread = threading.Thread(target=self.reload, args=(why,), name="reload", daemon=True)
            self._thread.start()
        return True

    def _refuse(self, why: str, error: str) -> bool:
        self.state.update(state="refused", at=time.time(), error=error, why=why)
        self.state["refused"] += 1
        log.error("reload_refused", why=why, error=error, detail="the running config stays in force")
        return False

    def reload(self, why: str = "request") -> bool:
        """Load, validate, build and swap in (blocking). True when the new config is in force."""
        from edge_inspector.config import load_config
        from edge_inspector.errors import ConfigError

        station = self._station
        assert station is not None
        self.state.update(state="loading", at=time.time(), error=None, why=why)
        log.info("reload_started", why=why, config=station.config_path)
        if station.config_path is None:
            return self._refuse(why, "the station was started without a config file")
        try:
            new = load_config(station.config_path, station.overrides)
        except ConfigError as exc:
            return self._refuse(why, str(exc))
        cfg, needs_restart = effective_config(station.cfg, new)
        if needs_restart:
            log.warning("reload_needs_restart", sections=needs_restart,
                        detail="these sections changed in the file; they take effect at the next restart")
        try:
            inspector = build_inspector(cfg)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the running stages
            return self._refuse(why, f"{type(exc).__name__}: {exc}")
        if station.stop.is_set():
            inspector.close()
            return self._refuse(why, "the station is stopping")
        old_fp = station.cfg.fingerprint()
        station.between_parts(lambda: self._swap(station, cfg, inspector))
        self.state.update(state="applied", at=time.time(), config=cfg.fingerprint(),
                          needs_restart=needs_restart)
        self.state["reloads"] += 1
        log.info("reload_applied", why=why, old_config=old_fp, config=cfg.fingerprint(),
                 model=inspector.model_hash, needs_restart=needs_restart)
        return True

    @staticmethod
    def _swap(station: Station, cfg: Config, inspector: Inspector) -> None:
        """Runs between two parts (the worker is not inspecting)."""
        from edge_inspector.logs import configure

        worker = station.worker_thread
        if worker is not None and not worker.is_alive():  # the loop has ended: nothing to swap into
            inspector.close()
            return
        old = station.inspector
        station.inspector = inspector
        station.cfg = cfg
        station.parts.deadline_s = cfg.policy.deadline_ms / 1000
        for out in station.outputs.outputs:
            if hasattr(out, "config_hash") and hasattr(out, "model_hash"):
                out.config_hash, out.model_hash = cfg.fingerprint(), inspector.model_hash
            images = getattr(out, "images", None)
            inner = getattr(images, "inner", images)  # the disk guard wraps the images
            if inner is not None and hasattr(inner, "cfg"):
                inner.cfg = cfg.images
        configure(cfg.logging.level, cfg.logging.format)
        try:
            old.close()
        except Exception as exc:  # noqa: BLE001
            log.error("reload_close_old_failed", error=str(exc))

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(30)
