"""The API as a ``lifecycle.Service``: uvicorn serving the FastAPI app on the service's thread.

``setup`` binds the socket (so a taken port refuses the start, and port 0 becomes a real one,
logged as ``api_listening``), ``run_loop`` serves until stopping, ``wake`` tells uvicorn to exit,
``teardown`` closes the socket and the upload stages. uvicorn never configures logging here
(``log_config=None``) and installs no signal handlers off the main thread.
"""

from __future__ import annotations

import socket
from typing import Any

import structlog

from edge_inspector.review import labels
from edge_inspector.api.app import ApiContext, create_app
from edge_inspector.api.config import ApiConfig
from edge_inspector.api.feed import Feed
from edge_inspector.api.inspect import UploadInspector
from edge_inspector.api.metrics import Metrics
from edge_inspector.config_base import reveal_secret
from edge_inspector.errors import StartupError
from edge_inspector.lifecycle import Service
from edge_inspector.outputs.store import connect

log = structlog.get_logger(__name__)


def build_feed(cfg: ApiConfig) -> Feed:
    """The output the daemon puts last among the outputs (metrics and the live feed)."""
    return Feed(Metrics(), cfg.feed_queue)


class ApiService(Service):
    name = "api"
    stop_timeout_s = 10.0

    def __init__(self, cfg: ApiConfig, station: Any, feed: Feed, build_stages) -> None:
        super().__init__()
        self.cfg = cfg
        self.station = station
        self.feed = feed
        self.build_stages = build_stages
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._server = None
        self._uploads: UploadInspector | None = None

    def setup(self) -> None:
        import uvicorn

        token = None
        if self.cfg.token is not None:
            try:
                token = reveal_secret(self.cfg.token)
            except ValueError as exc:
                raise StartupError(f"api.token: {exc}") from exc
            if not token:
                raise StartupError("api.token: the secret is empty")
        family = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.cfg.host, self.cfg.port))
        except OSError as exc:
            sock.close()
            raise StartupError(f"api: cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror}") from exc
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        db = connect(self.station.cfg.db_path)  # the labels table: its owner migrates it
        try:
            labels.migrate(db, self.station.cfg.db_path)
        finally:
            db.conn.close()
        self.feed.metrics.attach(self.station.snapshot)
        self._uploads = UploadInspector(lambda: self.station.cfg, self.build_stages)
        ctx = ApiContext(self.station, self.feed, self.feed.metrics, self._uploads, token,
                         int(self.cfg.max_upload_mb * 2**20))
        config = uvicorn.Config(create_app(ctx), log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        log.info("api_listening", url=f"http://{self.cfg.host}:{self.port}/", token=token is not None)

    def run_loop(self) -> None:
        if not self.stopping:
            self._server.run(sockets=[self._sock])

    def wake(self) -> None:
        self.feed.close_streams()
        if self._server is not None:
            self._server.should_exit = True

    def teardown(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._uploads is not None:
            self._uploads.close()

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    def status(self) -> dict[str, Any] | None:
        return {"url": self.url if self.port is not None else None, "feed_clients": self.feed.clients,
                "state": "failed" if self.failure else ("running" if self.running else "stopped")}
