"""The one lifecycle of everything that runs beside the inspection loop (Anomalib's workers).

Every service (the PLC link, the MQTT publisher, retention, reload, the control socket, the systemd
notifier) is a :class:`Service` and runs on its own thread::

    setup()      on the service's thread: open what the service owns (a socket, a SQLite connection,
                 a serial port, a broker client), so that exactly one thread owns it
    run_loop()   until the stop event is set: ``self.wait(s)`` sleeps, returns True once stopping
    teardown()   on the same thread, once, after run_loop returned or raised, or setup failed
                 (so it must cope with a half-done setup)

``start()`` returns once setup is done and re-raises its exception; ``stop()`` sets the stop event,
wakes the loop and joins; both act once, however often they are called. :class:`Services` starts a
list in order and stops it in reverse, each once. This module sits below the daemon and the
services (it imports neither), with :class:`StationView`, what a service may read of the station.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)


class Service:
    """Base of every service. Subclasses override ``setup``, ``run_loop``, ``teardown`` and
    ``status``; ``wake`` when the loop blocks on something other than the stop event."""

    name = "service"
    thread_name: str | None = None  # the thread's name; None: ``name``
    stop_timeout_s = 30.0  # how long ``stop`` waits for the thread

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._set_up = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._setup_error: BaseException | None = None
        self._stopped = False
        self.failure: str | None = None  # why run_loop or teardown raised, None while well

    # --- hooks ----------------------------------------------------------------------------------

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Acquire what the service owns. Raise to refuse the start (teardown still runs)."""

    def run_loop(self) -> None:
        """The service's work, until ``stopping``. By default: nothing but waiting."""
        self._stop.wait()

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Release what setup acquired; runs once on the service's thread."""

    def wake(self) -> None:  # noqa: B027 - optional hook
        """Make a run_loop that blocks elsewhere (select, a queue) look at the stop event."""

    def status(self) -> dict[str, Any] | None:
        """What the status CLI shows of this service; None: nothing to show."""
        return None

    # --- for the loop -----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the service is asked to stop."""
        return self._stop.wait(seconds)

    # --- for the owner ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, timeout: float = 60.0) -> None:
        """Run setup on the service's own thread; return when it is done (re-raising its error)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"service {self.name} was started already")
            self._thread = threading.Thread(target=self._main, name=self.thread_name or self.name,
                                            daemon=True)
        self._thread.start()
        if not self._set_up.wait(timeout):
            raise TimeoutError(f"service {self.name}: setup took longer than {timeout:g} s")
        if self._setup_error is not None:
            self._thread.join(self.stop_timeout_s)
            raise self._setup_error

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to end, join the thread (teardown runs there). Once; True when it ended."""
        with self._lock:
            first, self._stopped = not self._stopped, True
            thread = self._thread
        self._stop.set()
        if thread is None:
            return True
        if first:
            try:
                self.wake()
            except Exception as exc:  # noqa: BLE001 - stopping goes on
                log.error("service_wake_failed", service=self.name, error=f"{type(exc).__name__}: {exc}")
        thread.join(self.stop_timeout_s if timeout is None else timeout)
        if thread.is_alive():
            if first:
                log.error("service_stop_timeout", service=self.name,
                          detail="its thread is still running; the process exits without it")
            return False
        return True

    def _main(self) -> None:
        try:
            try:
                self.setup()
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                self._setup_error = exc
                return
            finally:
                self._set_up.set()
            self.run_loop()
        except Exception as exc:  # noqa: BLE001 - a dying service is reported, never a crash
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error("service_failed", service=self.name, error=self.failure)
        finally:
            try:
                self.teardown()
            except Exception as exc:  # noqa: BLE001
                log.error("service_teardown_failed", service=self.name, error=f"{type(exc).__name__}: {exc}")


class Services:
    """An ordered group: started in order, stopped in reverse order, each exactly once."""

    def __init__(self, services: list[Service] | None = None) -> None:
        self._items: list[Service] = list(services or [])
        self._started: list[Service] = []
        self._lock = threading.Lock()

    def add(self, service: Service, first: bool = False) -> None:
        if self._started:
            raise RuntimeError("services are added before they are started")
        self._items.insert(0, service) if first else self._items.append(service)

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str) -> Service | None:
        return next((s for s in self._items if s.name == name), None)

    def start_all(self) -> None:
        """Start each in order; when one fails, stop those already started and re-raise."""
        for service in self._items:
            try:
                service.start()
            except BaseException:
                self.stop_all()
                raise
            with self._lock:
                self._started.append(service)

    def stop_all(self) -> None:
        """Stop the started services, the last started first. Safe to call again (no-op)."""
        with self._lock:
            started, self._started = self._started, []
        for service in reversed(started):
            service.stop()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for service in self._items:
            try:
                got = service.status()
            except Exception as exc:  # noqa: BLE001 - one service's status never breaks the rest
                got = {"error": f"{type(exc).__name__}: {exc}"}
            if got is not None:
                out[service.name] = got
        return out


Listener = Callable[[str], None]
"""Called with what changed (``paused``, ``resumed``, ``installed``, ``fault``, ``recovered``), on the
thread that changed it."""


class StationView(Protocol):
    """What services read of the running station (``daemon.Station`` implements it)."""

    stop: threading.Event  # set: the station is shutting down
    ready: threading.Event  # set: the services are up and the loop runs
    paused: threading.Event  # set: every trigger becomes a NO-READ "paused"
    paused_reason: str
    part_started_mono: float | None  # the part the worker is on, None when idle
    last_progress_mono: float  # the worker's last sign of life
    queue: Any  # the inspection queue (``qsize()``)
    counters: Any  # triggers, decisions, outcomes (``daemon.Counters``)

    @property
    def cfg(self) -> Any: ...  # the config in force (``edge_inspector.config.Config``)

    @property
    def inspector(self) -> Any: ...  # the stages in force (``edge_inspector.pipeline.Inspector``)

    @property
    def versions(self) -> Any: ...  # what the next row is stamped with (``versions.Versions``)

    @property
    def worker_thread(self) -> threading.Thread | None: ...

    @property
    def services(self) -> Services: ...

    def snapshot(self) -> dict[str, Any]: ...

    def on_change(self, listener: Listener) -> None: ...

    def pause(self, via: str, reason: str = "") -> bool: ...  # True: it was running

    def resume(self, via: str, note: str = "") -> bool: ...  # True: it was paused
