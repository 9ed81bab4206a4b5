"""Logging, set up once by the application (a library never configures logging).

- structlog's events and the standard library's records (pymodbus, transformers, paho, gptqmodel's
  helpers, ...) go through one chain of processors to stderr: JSON (journald, log shippers) or
  lines for people (console). Libraries log at warning and above unless the station logs at debug.
- Under systemd (``$JOURNAL_STREAM`` names our stderr) every line starts with its syslog priority
  (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug; sd-daemon(3)), so ``journalctl -p
  warning`` shows the warnings and errors.
- stdout carries a command's results only. What libraries print (gptqmodel's banner and progress
  through ``print``) while stages are built, parts inspected or the daemon runs is turned into log
  events (:func:`stdout_to_log`); while stages are built, file descriptor 1 itself is redirected too
  (:func:`native_stdout_to_log`: what C code or a handle on the original stdout writes); a library
  logger that brought its own stream handler is adopted (:func:`adopt_library_loggers`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from collections.abc import Iterator

import structlog

LIBRARIES = ("pymodbus", "transformers", "gptqmodel", "accelerate", "torch", "paho", "huggingface_hub",
             "urllib3", "PIL", "asyncio", "filelock")
PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "warn": 4, "error": 3, "exception": 3,
            "critical": 2, "fatal": 2}


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write, not at configure time (a
    caller that swaps stderr, such as a test runner, never leaves the logger on a closed file)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _Handler(logging.StreamHandler):
    """The one handler on the root logger: stdlib records rendered by structlog's chain."""

    def __init__(self) -> None:
        super().__init__(_Stderr())


def journald_stream(env: dict[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` is the stream systemd connected to the journal (``$JOURNAL_STREAM``)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(fd)
        return bool(value) and (int(dev), int(ino)) == (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return False


def _priority(_logger, method: str, line: str) -> str:
    return f"<{PRIORITY.get(method, 6)}>{line}"


def configure(level: str = "info", fmt: str = "json", journald: bool | None = None) -> None:
    """(Re)configure structlog and the stdlib's root logger. ``journald`` None: detect it."""
    if journald is None:
        journald = journald_stream()
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty() and not journald))
    tail = [renderer, _priority] if journald else [renderer]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    numeric = getattr(logging, level.upper())
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, stamp,
                    structlog.processors.format_exc_info, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),
        cache_logger_on_first_use=False,
    )
    handler = _Handler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, *tail]))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    adopt_library_loggers()
    global _configured
    _configured = True


def adopt_library_loggers() -> int:
    """Take the stream handlers off every library logger and let its records reach the root's
    handler (transformers, for one, adds its own stderr handler when first used). Returns how many."""
    adopted = 0
    for logger in list(logging.root.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger) or logger.name.startswith("edge_inspector"):
            continue
        streams = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for h in streams:
            logger.removeHandler(h)
        if streams or not logger.propagate:
            logger.propagate = True
            adopted += 1
    return adopted


class _LogWriter(io.TextIOBase):
    """A text stream that turns each line written to it into a log event (on stderr)."""

    def __init__(self, real) -> None:
        self.real = real
        self._buf = ""
        self._lock = threading.Lock()
        self._inside = threading.local()
        self._log = structlog.get_logger("stdout")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def _emit(self, line: str) -> None:
        if getattr(self._inside, "on", False):  # logging itself wrote to stdout: never loop
            self.real.write(line + "\n")
            return
        self._inside.on = True
        try:
            self._log.info("library_output", line=line[:2000])
        finally:
            self._inside.on = False

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            *lines, self._buf = self._buf.replace("\r", "\n").split("\n")
        for line in lines:
            if line.strip():
                self._emit(line.rstrip())
        return len(text)

    def flush(self) -> None:
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest.strip():
            self._emit(rest.rstrip())


_redirect_lock = threading.Lock()
_redirect: dict = {"depth": 0, "writer": None}
_configured = False


@contextlib.contextmanager
def stdout_to_log(origin: str) -> Iterator[None]:
    """While inside (from any thread; nested uses share one redirection), what anything writes to
    ``sys.stdout`` becomes log events on stderr. Does nothing until :func:`configure` ran (a test
    runner's or a caller's own stdout is left alone)."""
    if not _configured:
        yield
        return
    with _redirect_lock:
        if _redirect["depth"] == 0:
            _redirect["writer"] = _LogWriter(sys.stdout)
            sys.stdout = _redirect["writer"]
        _redirect["depth"] += 1
    try:
        yield
    finally:
        with _redirect_lock:
            _redirect["depth"] -= 1
            writer = _redirect["writer"]
            if _redirect["depth"] == 0 and writer is not None:
                writer.flush()
                if sys.stdout is writer:
                    sys.stdout = writer.real
                _redirect["writer"] = None


_native: dict = {"depth": 0}


def _libc_flush() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)  # C stdio buffers, written before fd 1 changes hands
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def native_stdout_to_log(origin: str) -> Iterator[None]:
    """While inside, file descriptor 1 is a pipe whose lines become log events (on stderr): output of
    C extensions, or of code that kept a handle on the original stdout, never reaches the results.
    Process-wide (use it where nothing else writes results: building the stages); nested or
    concurrent uses share one redirection. Does nothing until :func:`configure` ran."""
    with _redirect_lock:
        if not _configured or _native["depth"] > 0:
            _native["depth"] += 1 if _configured else 0
            owner = False
        else:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            _libc_flush()
            try:
                saved = os.dup(1)
            except OSError:  # no fd 1 (a daemon started without one): nothing to protect
                saved = None
            owner = saved is not None
            if owner:
                r, w = os.pipe()
                os.dup2(w, 1)
                os.close(w)
                writer = _LogWriter(sys.stderr)
                reader = threading.Thread(target=_pump, args=(r, writer), name=f"stdout-{origin}",
                                          daemon=True)
                reader.start()
                _native["depth"] = 1
    try:
        yield
    finally:
        with _redirect_lock:
            if owner:
                _libc_flush()
                os.dup2(saved, 1)  # closes the pipe's last write end: the reader sees its end
                os.close(saved)
                _native["depth"] = 0
            elif _configured and _native["depth"] > 0:
                _native["depth"] -= 1
        if owner:
            reader.join(timeout=5)
            writer.flush()


def _pump(fd: int, writer: _LogWriter) -> None:
    try:
        while chunk := os.read(fd, 65536):
            writer.write(chunk.decode("utf-8", "replace"))
    finally:
        os.close(fd)
