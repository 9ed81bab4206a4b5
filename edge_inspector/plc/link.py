"""The framed, acknowledged serial link to the bridge (the transport under :mod:`.bridge`).

- Frames the station originates get a sequence number and wait in ``inflight`` for their ACK/NAK;
  one not answered in ``ack_timeout_s`` is written again byte for byte, at most ``max_tx`` times,
  then given up (answer :data:`LOST`). At most ``window`` data frames are unanswered at once (the
  bridge remembers 16 frames for duplicates); control frames (handshake, heartbeat) go first.
- Frames from the bridge are answered: ACK, or NAK when a frame with a good CRC holds an invalid
  message. A retransmitted frame (same seq and CRC, see ``SeqHistory``) is answered again and
  not handed on twice. Garbled frames are dropped by ``StreamDecoder`` and never answered.
- ``quiet``: nothing at all is written, not even ACKs (any frame would count as a heartbeat).
- ``pause()`` (port lost, bridge restarted, after a quiet spell): frames in flight are held, or
  given up as :data:`DROPPED` when their ``wanted`` hook says so; ``resume()`` writes the held ones
  again, byte for byte, once the handshake is done.

Answer callbacks run in the caller of ``poll`` (the bridge's I/O thread), never under the lock.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial
import structlog

from edge_inspector.plc import protocol as p

log = structlog.get_logger(__name__)

LOST = "lost"  # no answer after max_tx transmissions: the bridge may or may not have applied it
DROPPED = "dropped"  # never (re)sent: built as None, or not wanted after an outage

Answer = p.NakReason | int | str | None  # None: ACK


class LinkError(Exception):
    """The port failed (unplugged, closed, a write that timed out). The message names the port."""


@dataclass(eq=False)
class Outgoing:
    build: Callable[[], p.Message | None]  # called at the first transmission; None: not sent
    on_answer: Callable[[Answer], None] | None = None
    control: bool = False  # handshake/heartbeat: leaves before the link is ready, outside the window
    wanted: Callable[[], bool] | None = None  # after an outage: resend it? (None: drop it)
    seq: int = -1
    raw: bytes = b""
    message: p.Message | None = None
    tries: int = 0
    first_sent: float = 0.0
    last_sent: float = 0.0


class Transport:
    def __init__(self, port: str, baud: int, *, ack_timeout_s: float, max_tx: int,
                 on_event: Callable[[p.Frame, float], p.NakReason | None],
                 window: int = p.HOST_WINDOW) -> None:
        self.port, self.baud = port, baud
        self.ack_timeout_s, self.max_tx, self.window = ack_timeout_s, max_tx, window
        self.on_event = on_event
        self._lock = threading.RLock()
        self._ser: serial.Serial | None = None
        self._seq = random.randrange(256)
        self.inflight: dict[int, Outgoing] = {}
        self._held: list[Outgoing] = []
        self._control: deque[Outgoing] = deque()
        self._data: deque[Outgoing] = deque()
        self.ready = False
        self.quiet = False
        self.history = p.SeqHistory(64)
        self.decoder = p.StreamDecoder()
        self.stats: Counter[str] = Counter()
        self.last_tx = 0.0
        self.last_rx = 0.0
        self.broken: str | None = None  # a write failed: the I/O thread reconnects

    # -- port ------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        """Open the port (LinkError naming it on failure). pyserial's open flushes pending input."""
        try:
            ser = serial.Serial(self.port, self.baud, timeout=0.01, write_timeout=1.0,
                                exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.port}: {exc}") from None
        with self._lock:
            self._ser, self.broken = ser, None
            self.decoder = p.StreamDecoder()

    def close(self) -> None:
        with self._lock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass

    def poll(self) -> None:
        """Read what arrived (waits up to 10 ms), handle it, retransmit what is due."""
        ser = self._ser
        if ser is None:
            raise LinkError(f"{self.port} is not open")
        if self.broken:
            raise LinkError(self.broken)
        try:
            data = ser.read(1)
            if data and ser.in_waiting:
                data += ser.read(ser.in_waiting)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise LinkError(f"{self.port}: {exc or type(exc).__name__}") from None
        now = time.monotonic()
        if data:
            self.last_rx = now
            self.stats["rx_bytes"] += len(data)
            self._receive(data, now)
        self._retransmit(now)

    # -- sending ---------------------------------------------------------------------------------
    def send(self, item: Outgoing) -> None:
        with self._lock:
            (self._control if item.control else self._data).append(item)
        self.pump()

    def pump(self) -> None:
        """Transmit queued frames while the link and the window allow."""
        skipped: list[Outgoing] = []
        with self._lock:
            while self._ser is not None and not self.quiet:
                if self._control:
                    item = self._control.popleft()
                elif self._data and self.ready and self._data_inflight() < self.window:
                    item = self._data.popleft()
                else:
                    break
                msg = item.build()
                if msg is None:
                    skipped.append(item)
                    continue
                while self._seq in self.inflight:
                    self._seq = p.seq_next(self._seq)
                item.seq, item.message = self._seq, msg
                self._seq = p.seq_next(self._seq)
                item.raw = p.encode_frame(item.seq, msg)
                item.tries, item.first_sent = 1, time.monotonic()
                item.last_sent = item.first_sent
                self.inflight[item.seq] = item
                self._write(item.raw)
        self._answer_all(skipped, DROPPED)

    def _data_inflight(self) -> int:
        return sum(1 for i in self.inflight.values() if not i.control)

    def _write(self, raw: bytes) -> None:
        if self.quiet or self._ser is None or self.broken:
            return
        try:
            self._ser.write(raw)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            self.broken = f"{self.port}: write failed: {exc or type(exc).__name__}"
            return
        self.last_tx = time.monotonic()
        self.stats["tx_frames"] += 1

    def _retransmit(self, now: float) -> None:
        lost: list[Outgoing] = []
        with self._lock:
            if self.quiet or self._ser is None:
                return
            for seq, item in list(self.inflight.items()):
                if now - item.last_sent < self.ack_timeout_s:
                    continue
                if item.tries >= self.max_tx:
                    del self.inflight[seq]
                    lost.append(item)
                    self.stats["tx_lost"] += 1
                    continue
                item.tries += 1
                item.last_sent = now
                self.stats["retransmissions"] += 1
                self._write(item.raw)
        self._answer_all(lost, LOST)
        if lost:
            self.pump()

    # -- outages ---------------------------------------------------------------------------------
    def pause(self) -> None:
        """Not ready: hold the frames in flight that are still wanted, drop the rest."""
        dropped: list[Outgoing] = []
        with self._lock:
            self.ready = False
            for item in sorted(self.inflight.values(), key=lambda i: i.first_sent):
                keep = item.wanted is not None and not item.control and item.wanted()
                (self._held if keep else dropped).append(item)
            self.inflight.clear()
            dropped.extend(self._control)
            self._control.clear()
        self._answer_all(dropped, DROPPED)

    def resume(self) -> None:
        """Ready (handshake done): write the held frames again, byte for byte, then the queue."""
        dropped: list[Outgoing] = []
        with self._lock:
            self.ready = True
            held, self._held = self._held, []
            now = time.monotonic()
            for item in held:
                if item.wanted is None or not item.wanted() or item.seq in self.inflight:
                    dropped.append(item)
                    continue
                item.tries, item.last_sent = 1, now
                self.inflight[item.seq] = item
                self.stats["resent_after_outage"] += 1
                self._write(item.raw)
        self._answer_all(dropped, DROPPED)
        self.pump()

    def drop_all(self) -> None:
        """Give up everything queued, held and in flight (shutdown)."""
        with self._lock:
            items = [*self.inflight.values(), *self._held, *self._control, *self._data]
            self.inflight.clear()
            self._held.clear()
            self._control.clear()
            self._data.clear()
        self._answer_all(items, DROPPED)

    @property
    def unanswered(self) -> int:
        with self._lock:
            return len(self.inflight) + len(self._held) + len(self._data)

    # -- receiving -------------------------------------------------------------------------------
    def _receive(self, data: bytes, now: float) -> None:
        start = 0
        while start < len(data):
            end = data.find(0, start)
            stop = len(data) if end < 0 else end + 1
            bad = self.decoder.bad_messages
            for frame in self.decoder.feed(data[start:stop]):
                self._on_frame(frame, now)
            if self.decoder.bad_messages != bad:
                err = self.decoder.last_error
                if isinstance(err, p.MessageError) and err.msg_type not in (p.MsgType.ACK,
                                                                            p.MsgType.NAK):
                    self._reply(err.seq, err.reason)  # good CRC, invalid content: refuse it
            start = stop

    def _on_frame(self, frame: p.Frame, now: float) -> None:
        msg = frame.message
        if isinstance(msg, p.Ack | p.Nak):
            with self._lock:
                item = self.inflight.pop(frame.seq, None)
            if item is None:
                self.stats["stray_answers"] += 1
                return
            answer: Answer = None
            if isinstance(msg, p.Nak):
                try:
                    answer = p.NakReason(msg.reason)
                except ValueError:
                    answer = msg.reason
            self._answer_all([item], answer)
            self.pump()
            return
        seen, answer = self.history.lookup(frame)
        if seen:
            self.stats["rx_duplicates"] += 1
        else:
            answer = self.on_event(frame, now)
            self.history.add(frame, answer)
        self._reply(frame.seq, answer)

    def _reply(self, seq: int, reason: p.NakReason | None) -> None:
        msg: p.Message = p.Ack() if reason is None else p.Nak(int(reason))
        with self._lock:
            self._write(p.encode_frame(seq, msg))

    @staticmethod
    def _answer_all(items: list[Outgoing], answer: Any) -> None:
        for item in items:
            if item.on_answer is not None:
                try:
                    item.on_answer(answer)
                except Exception as exc:  # noqa: BLE001 - a callback must not kill the I/O thread
                    log.error("plc_answer_callback_failed", error=f"{type(exc).__name__}: {exc}")
