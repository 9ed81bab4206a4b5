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
actions, the deadline of the next triggers), ``pipeline.judge_grace_ms``, ``images``, ``logging``, and
each camera's ``regions``, ``recipe`` and ``deadline_ms`` (its ``capture``, ``plc``, ``view_set`` and
``triggers``, and the list of cameras itself, need a restart).
Not hot-reloaded (they hold devices, files or sockets): ``station``, ``capture``, ``store``,
``service``, ``pipeline.queue_size``; a change there is logged (``reload_needs_restart``) and takes
effect at the next restart; the rest of the new config is applied.

Building the new stages beside the old ones needs memory for both for a moment: a VLM judge that
does not fit twice on the GPU makes the reload fail (refused, the old one stays): restart instead.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector.errors import EdgeInspectorError
from edge_inspector.lifecycle import Service

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.stages import Stages

log = structlog.get_logger(__name__)

RESTART_ONLY = ("station", "capture", "store", "service")


def effective_config(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the sections that need a restart taken from ``old``; and the names of those
    sections that differ (changed in the file, not applied)."""
    changed = [s for s in RESTART_ONLY if getattr(old, s) != getattr(new, s)]
    update: dict[str, Any] = {s: getattr(old, s) for s in RESTART_ONLY}
    if old.pipeline.queue_size != new.pipeline.queue_size:
        changed.append("pipeline.queue_size")
    update["pipeline"] = new.pipeline.model_copy(update={"queue_size": old.pipeline.queue_size})
    if old.cameras or new.cameras:
        update["cameras"], more = _cameras(old.cameras or [], new.cameras or [])
        changed += more
    return new.model_copy(update=update), changed


CAMERA_RESTART_ONLY = ("capture", "plc", "view_set", "triggers")  # a camera's device, lane, bus


def _cameras(old: list, new: list) -> tuple[list | None, list[str]]:
    """The new cameras with each one's device, lane, view set and trigger input kept from the
    running ones (their regions, recipe and deadline reload); the running cameras as they are when
    the file adds, removes, renames or reorders cameras (a restart applies that)."""
    if [c.name for c in old] != [c.name for c in new]:
        return (old or None), ["cameras"]
    changed, merged = [], []
    for i, (o, n) in enumerate(zip(old, new, strict=True)):
        keep = {k: getattr(o, k) for k in CAMERA_RESTART_ONLY}
        changed += [f"cameras.{i}.{k}" for k, v in keep.items() if getattr(n, k) != v]
        merged.append(n.model_copy(update=keep))
    return merged, changed


class Reloader(Service):
    """Reloads the config on request, one reload at a time, on the service's own thread.

    What it needs is handed in by the daemon (no station to reach into): ``load(path, overrides)``
    reads and validates the file (``config.load_config``), ``build(cfg)`` makes the stages
    (``stages.build_stages``), ``install(stages)`` swaps them in between two parts and says whether
    they are in force (the station closes stages it did not take), ``current()`` is the config in
    force. The ``--set`` overrides of the command line, and a recipe switched to, are kept here.
    """

    name = "reload"

    def __init__(self, config_path: str | None, overrides: list[str],
                 load: Callable[[str, list[str]], Config], build: Callable[[Config], Stages],
                 install: Callable[[Stages], bool], current: Callable[[], Config]) -> None:
        super().__init__()
        self.config_path = config_path
        self.overrides = list(overrides)
        self._load, self._build, self._install, self._current = load, build, install, current
        self._requests: queue.Queue = queue.Queue(maxsize=1)
        self._busy = threading.Lock()
        self.state: dict[str, Any] = {"state": "none", "reloads": 0, "refused": 0}

    def status(self) -> dict[str, Any]:
        return dict(self.state)

    def request(self, why: str = "request", overrides: dict[str, str] | None = None) -> bool:
        """Queue a reload (``overrides``: dotted keys set for it and, once in force, for later ones).
        Returns at once; False when one is already waiting or running, or the service is stopping."""
        if self.stopping or not self.running:
            log.warning("reload_unavailable", why=why, detail="the station is stopping")
            return False
        if self._busy.locked():
            log.warning("reload_busy", why=why, detail="a reload is already running")
            return False
        try:
            self._requests.put_nowait((why, dict(overrides or {})))
        except queue.Full:
            log.warning("reload_busy", why=why, detail="a reload is already waiting")
            return False
        return True

    def run_loop(self) -> None:
        while not self.stopping:
            try:
                why, overrides = self._requests.get(timeout=0.5)
            except queue.Empty:
                continue
            if why is None:
                return
            self.reload(why, overrides)

    def wake(self) -> None:
        try:
            self._requests.put_nowait((None, None))
        except queue.Full:
            pass  # a request is waiting: the loop looks at the stop event after it

    def _refuse(self, why: str, error: str) -> bool:
        self.state.update(state="refused", at=time.time(), error=error, why=why)
        self.state["refused"] += 1
        log.error("reload_refused", why=why, error=error, detail="the running config stays in force")
        return False

    def reload(self, why: str = "request", overrides: dict[str, str] | None = None) -> bool:
        """Load, validate, build and swap in (blocking). True when the new config is in force."""
        with self._busy:
            self.state.update(state="loading", at=time.time(), error=None, why=why)
            log.info("reload_started", why=why, config=self.config_path)
            if self.config_path is None:
                return self._refuse(why, "the station was started without a config file")
            extra = [f"{k}={v}" for k, v in (overrides or {}).items()]
            keys = {f"{k}=" for k in (overrides or {})}
            candidate = [o for o in self.overrides if not any(o.startswith(k) for k in keys)] + extra
            old = self._current()
            try:
                new = self._load(self.config_path, candidate)
                cfg, needs_restart = effective_config(old, new)
                if needs_restart:
                    log.warning("reload_needs_restart", sections=needs_restart, detail="these sections "
                                "changed in the file; they take effect at the next restart")
                stages = self._build(cfg)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the running stages
                return self._refuse(why, str(exc) if isinstance(exc, EdgeInspectorError)
                                    else f"{type(exc).__name__}: {exc}")
            if self.stopping:
                stages.close()
                return self._refuse(why, "the station is stopping")
            if not self._install(stages):  # the station closed them
                return self._refuse(why, "the station is stopping")
            self.overrides = candidate
            self.state.update(state="applied", at=time.time(), config=stages.versions.config,
                              needs_restart=needs_restart)
            self.state["reloads"] += 1
            log.info("reload_applied", why=why, old_config=old.fingerprint(), config=stages.versions.config,
                     model=stages.versions.model, recipe_version=stages.versions.recipe_version,
                     needs_restart=needs_restart)
            return True
