"""The MQTT publisher: a station service that drains the outbox to the broker, and the MQTT door to
the command table.

Two threads, neither on the inspection path: paho's network thread (``connect_async`` +
``loop_start``: connects, reconnects with back-off, calls the callbacks) and the service's own
``mqtt-outbox`` thread, which owns the publisher's SQLite connection (opened in setup, closed in
teardown), publishes outbox rows in id order with QoS 1, at most ``mqtt.inflight`` unacknowledged,
and marks a row delivered when its PUBACK arrives. paho keeps unacknowledged messages across a
reconnect and sends them again first, so the order holds; a restart starts again from the oldest
undelivered row. Delivery is at least once: a subscriber de-duplicates by part id.

"Connected" means the broker accepted the connection (CONNACK success), never less. On every
(re)connect: ``available`` = online (retained), the subscription to ``set/+``, the retained state.
The state is sent again at once when the station changes (pause, resume, new stages installed) and
when the camera or PLC link changed (checked each stats period). The last will is ``available`` =
offline, and a clean stop publishes ``offline`` too (after flushing the outbox for up to
``mqtt.stop_flush_s``): Home Assistant knows only online and offline.
"""

from __future__ import annotations

import collections
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_inspector.commands import Dispatcher
from edge_inspector.lifecycle import Service, StationView
from edge_inspector.outputs.mqtt import commands, reject_image, status
from edge_inspector.outputs.mqtt.config import MqttConfig
from edge_inspector.outputs.mqtt.outbox import Outbox, next_batch
from edge_inspector.outputs.mqtt.topics import Topics
from edge_inspector.versions import Versions

log = structlog.get_logger(__name__)

MARK_BATCH, MARK_EVERY_S = 256, 0.2  # mark delivered rows in batches (SQLite writes)
_SENT = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)  # NO_CONN: paho resends it
OFFLINE = "offline"  # the last will, and what a clean stop says


class MqttPublisher(Service):
    name = "mqtt"
    thread_name = "mqtt-outbox"

    def __init__(self, cfg: MqttConfig, db_path: Path, data_dir: Path, topics: Topics, outbox: Outbox,
                 versions: Callable[[], Versions], password: str | None = None,
                 client_name: str = "station") -> None:
        super().__init__()
        self.cfg = cfg
        self.db_path = Path(db_path)
        self.data_dir = Path(data_dir)
        self.topics = topics
        self.outbox = outbox
        self.versions = versions
        self.client_name = client_name
        self.connected = threading.Event()
        self.drained = threading.Event()
        self.part_ms: collections.deque[float] = collections.deque(maxlen=100_000)
        self.ack_ms: collections.deque[float] = collections.deque(maxlen=20_000)  # for the benchmark
        self.images: collections.deque[Any] = collections.deque(maxlen=4)
        self.counts = collections.Counter()
        self.station: StationView | None = None
        self.dispatcher: Dispatcher | None = None
        self._password = password
        self._wake = threading.Event()
        self._acks: collections.deque[tuple[int, float]] = collections.deque()  # (mid, time of PUBACK)
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (outbox id, decided): own thread only
        self._stats_ms: list[float] = []  # PUBACK latencies since the last stats message
        self._cursor = 0  # the last outbox id handed to paho
        self._unmarked: list[int] = []  # acknowledged outbox ids not yet marked delivered
        self._marked_at = 0.0
        self._notified = 0  # bumped by notify(): a write the outbox thread may not have seen yet
        self._state_sent: dict[str, Any] | None = None
        self._state_dirty = True
        self._client: mqtt.Client | None = None
        self._conn: sqlite3.Connection | None = None
        self.retained_on_connect: list[tuple[str, bytes]] = []  # Home Assistant discovery configs

    # --- lifecycle -----------------------------------------------------------------------------

    def attach(self, station: StationView, dispatcher: Dispatcher) -> None:
        """Wiring, before start: the station it reports on and the command table it serves."""
        self.station, self.dispatcher = station, dispatcher
        station.on_change(self._station_changed)

    def setup(self) -> None:
        if self.station is None or self.dispatcher is None:
            raise RuntimeError("the MQTT publisher needs attach(station, dispatcher) before start")
        self._conn = sqlite3.connect(str(self.db_path), timeout=10, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=10000")  # autocommit: never holds a read snapshot
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints stay with the store's writer
        self.outbox.recount(self._conn)
        self._client = self._make_client()
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        log.info("mqtt_started", host=self.cfg.host, port=self.cfg.port, base=self.topics.base,
                 pending=self.outbox.pending)

    def wake(self) -> None:
        self._wake.set()

    def teardown(self) -> None:
        """Say ``offline`` (retained), disconnect, mark what was acknowledged, close the connection."""
        client = self._client
        if client is not None:
            if self.connected.is_set():
                info = client.publish(self.topics.available, OFFLINE, qos=1, retain=True)
                try:
                    info.wait_for_publish(2.0)
                except (RuntimeError, ValueError):
                    pass
            client.disconnect()
            client.loop_stop()
        self.connected.clear()
        if self._conn is not None:
            try:
                self._resolve_acks(force=True)  # PUBACKs that came during the flush
            except sqlite3.Error as exc:  # they are published again after the next start
                log.warning("mqtt_mark_delivered_failed", error=str(exc))
            finally:
                self._conn.close()
                self._conn = None
        log.info("mqtt_stopped", **self.outbox.health())

    def _make_client(self) -> mqtt.Client:
        cid = self.cfg.client_id or f"edge-inspector-{self.client_name}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311,
                        clean_session=True)
        c.suppress_exceptions = True  # a bug in a callback must not kill the network thread
        c.max_inflight_messages_set(self.cfg.inflight + 16)  # + availability, state, stats
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, int(self.cfg.reconnect_max_s))
        c.will_set(self.topics.available, OFFLINE, qos=1, retain=True)
        tls = self.cfg.tls
        if tls is not None:
            c.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                      certfile=str(tls.cert_file) if tls.cert_file else None,
                      keyfile=str(tls.key_file) if tls.key_file else None,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self._password)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    # --- paho callbacks (network thread: never block, never raise) -----------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:  # refused: bad credentials, not authorised, ... NOT connected
            self.counts["refused"] += 1
            log.error("mqtt_connect_refused", host=self.cfg.host, port=self.cfg.port, reason=str(reason_code))
            return
        self.counts["connects"] += 1
        client.subscribe(self.topics.set_filter, qos=1)
        client.publish(self.topics.available, "online", qos=1, retain=True)
        for topic, payload in self.retained_on_connect:
            client.publish(topic, payload, qos=1, retain=True)
        self._state_dirty = True
        self.connected.set()
        self._wake.set()
        log.info("mqtt_connected", host=self.cfg.host, port=self.cfg.port, connects=self.counts["connects"])

    def _on_connect_fail(self, client, userdata) -> None:
        self.counts["connect_failures"] += 1
        if self.counts["connect_failures"] in (1, 10) or self.counts["connect_failures"] % 100 == 0:
            log.warning("mqtt_unreachable", host=self.cfg.host, port=self.cfg.port,
                        attempts=self.counts["connect_failures"])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self.stopping:
            log.warning("mqtt_disconnected", reason=str(reason_code), pending=self.outbox.pending)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append((mid, time.time()))  # resolved by the outbox thread (paho holds its lock)
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            self._command(message)
        except Exception as exc:  # noqa: BLE001 - bad input never crashes the station
            self.counts["commands_ignored"] += 1
            log.warning("mqtt_command_ignored", why=f"{type(exc).__name__}: {exc}")

    def _command(self, message) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = None
        got = commands.parse(self.topics.command_name(topic) if topic else None, message.payload,
                             retained=bool(message.retain), max_bytes=self.cfg.command_max_bytes)
        if isinstance(got, commands.Rejected):
            self.counts["commands_ignored"] += 1
            log.warning("mqtt_command_ignored", topic=(topic or "?")[:200], command=got.name,
                        why=got.why, bytes=len(message.payload))
            return
        self.counts["commands"] += 1
        log.info("mqtt_command", command=got.name, value=got.value)
        reply = self.dispatcher.dispatch(got)
        if not reply.ok:
            self.counts["commands_refused"] += 1
            log.warning("mqtt_command_refused", command=got.name, value=got.value, why=reply.error)
        self._client.publish(self.topics.reply, status.dumps({"cmd": got.name, **reply.to_json()}), qos=1)
        self._station_changed("command")

    def _station_changed(self, what: str) -> None:
        """The station paused, resumed or took new stages: the retained state goes out again."""
        self._state_dirty = True
        self._wake.set()

    # --- the outbox thread ---------------------------------------------------------------------

    def run_loop(self) -> None:
        interval = self.cfg.stats_interval_s
        next_stats = time.monotonic() + interval
        next_prune = time.monotonic() + 5.0
        flush_until: float | None = None
        while True:
            self._wake.wait(0.02 if self.stopping else max(0.0, min(0.5, next_stats - time.monotonic())))
            self._wake.clear()
            try:
                self._resolve_acks()
                now = time.monotonic()
                if self.stopping:  # flush what the last parts left, while connected, then go
                    if flush_until is None:
                        flush_until = now + self.cfg.stop_flush_s
                    if not self.connected.is_set() or self.drained.is_set() or now >= flush_until:
                        if self.connected.is_set() and not self.drained.is_set():
                            log.warning("mqtt_stop_with_undelivered", pending=self.outbox.pending,
                                        hint="they are published after the next start")
                        return
                if self.connected.is_set():
                    if self._state_dirty:
                        self._publish_state()
                    self._fill_window(self._notified)
                    self._publish_images()
                if now >= next_stats:
                    next_stats = now + interval
                    self._publish_stats(interval)
                if now >= next_prune:
                    next_prune = now + 5.0
                    self.outbox.prune(self._conn, self.cfg.outbox_keep_delivered_s)
            except Exception as exc:  # noqa: BLE001 - keep draining; the rows stay in the outbox
                log.error("mqtt_outbox_error", error=f"{type(exc).__name__}: {exc}")
                self.wait(1.0)  # at once when stopping: the flush deadline ends the loop then

    def _resolve_acks(self, force: bool = False) -> None:
        ids = self._unmarked  # kept when marking failed (database busy): retried next time
        while self._acks:
            mid, at = self._acks.popleft()
            entry = self._inflight.pop(mid, None)
            if entry is not None:  # None: availability, state, stats
                ids.append(entry[0])
                ms = (at - entry[1]) * 1000
                self.ack_ms.append(ms)
                self._stats_ms.append(ms)
        now = time.monotonic()
        if ids and (force or len(ids) >= MARK_BATCH or now - self._marked_at >= MARK_EVERY_S):
            # batched: fewer write transactions competing with the store's; a crash before the
            # mark only means those results are published again (at least once)
            self.outbox.mark_delivered(self._conn, ids)
            self._unmarked = []
            self._marked_at = now

    def _fill_window(self, seen: int) -> None:
        room = self.cfg.inflight - len(self._inflight)
        batch = next_batch(self._conn, self._cursor, room) if room > 0 else []
        for m in batch:
            info = self._client.publish(m.topic, m.payload, qos=1)
            if info.rc not in _SENT:
                log.error("mqtt_publish_failed", part_id=m.part_id, rc=mqtt.error_string(info.rc))
                break
            self._inflight[info.mid] = (m.id, m.decided)
            self._cursor = m.id
            self.counts["published"] += 1
        if not self._inflight and room > 0 and len(batch) < room and seen == self._notified:
            self.drained.set()

    def _publish_state(self) -> None:
        self._state_dirty = False
        body = status.state_of(self.station, self.versions())
        self._client.publish(self.topics.state, status.dumps({**body, "time": round(time.time(), 3)}),
                             qos=1, retain=True)
        self._state_sent = body

    def _publish_stats(self, interval: float) -> None:
        if self.station is None:
            return
        ack, self._stats_ms = self._stats_ms, []
        body = status.stats_of(self.station, status.drain(self.part_ms), ack, self.health_counts(),
                               self.data_dir, interval)
        if self.connected.is_set():
            self._client.publish(self.topics.stats, status.dumps(body), qos=1)
            now_state = status.state_of(self.station, self.versions())
            if now_state != self._state_sent:
                self._state_dirty = True  # the camera or the PLC link changed: send the state again
                self._wake.set()

    def _publish_images(self) -> None:
        while self.images:
            inspection = self.images.popleft()
            jpeg = reject_image.encode(inspection, self.cfg.reject_image_max_kb * 1024)
            if jpeg is None:
                self.counts["reject_images_skipped"] += 1
                continue
            self._client.publish(self.topics.reject_image_for(inspection.frame.camera), jpeg, qos=0)
            self.counts["reject_images"] += 1

    # --- for the output and the status CLI ----------------------------------------------------

    def notify(self) -> None:
        """A result was committed to the outbox (called by the output, after the store)."""
        self._notified += 1
        self.drained.clear()
        self._wake.set()

    def health_counts(self) -> dict[str, Any]:
        return {**self.outbox.health(), "published": self.counts["published"],
                "inflight": len(self._inflight)}

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "state": "connected" if self.connected.is_set() else "disconnected",
                "broker": f"{self.cfg.host}:{self.cfg.port}", **self.health_counts(),
                "connects": self.counts["connects"], "refused": self.counts["refused"],
                "commands": self.counts["commands"], "commands_ignored": self.counts["commands_ignored"],
                "commands_refused": self.counts["commands_refused"]}
