#!/usr/bin/env python3
"""Smoke run of the real firmware in simavr through bridge_sim: the protocol end to end.

    make -C firmware_bridge all sim
    .venv/bin/python firmware_bridge/sim/sim_smoke.py [--verbose]

Checks: boot safe state; HELLO/CONFIG -> READY; a part-present edge -> TRIGGER with the MCU's
time; ARM + DECIDE REJECT -> one REJECT pulse of the configured width (simulated time), APPLIED;
a retransmitted DECIDE is re-ACKed and not re-applied; a missed deadline -> the firmware's own
fail-safe pulse and FAILSAFE; a late DECIDE -> NAK; a full table -> NAK; heartbeat loss -> FAULT on,
READY off, FAILSAFE for every pending part. Prints measurements; exits non-zero on a failure.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import serial

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge_inspector.plc import protocol as p  # noqa: E402

HERE = Path(__file__).resolve().parent
SIM = HERE.parent / "build" / "bridge_sim"
ELF = HERE.parent / "build" / "bridge.elf"


class Harness:
    """bridge_sim's stdin/stdout: commands in, PIN/IN/TIME lines out (see bridge_sim.c)."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.proc = subprocess.Popen(
            [str(SIM), str(ELF)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        first = self.proc.stdout.readline().split()
        assert first and first[0] == "PTY", f"unexpected first line {first}"
        self.pty = first[1]
        self.lines: queue.Queue[list[str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if self.verbose:
                print("  sim:", line.rstrip())
            self.lines.put(line.split())

    def cmd(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def expect(self, *prefix: str, timeout: float = 2.0) -> list[str]:
        """The next line starting with prefix; other lines in between are an error for PIN lines."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                words = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out waiting for {' '.join(prefix)}") from None
            if tuple(words[: len(prefix)]) == prefix:
                return words
            if words[0] == "PIN":
                raise AssertionError(f"unexpected {' '.join(words)} while waiting for {prefix}")

    def no_pin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                words = self.lines.get(timeout=left)
            except queue.Empty:
                return
            assert words[0] != "PIN", f"unexpected {' '.join(words)}"

    def sim_time(self) -> int:
        self.cmd("TIME")
        return int(self.expect("TIME")[1])

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        try:
            self.cmd("QUIT")
            self.proc.wait(timeout=2)
        except Exception:
            self.proc.kill()


class Link:
    """Minimal host side: sends with retransmission, ACKs and dedups the bridge's events."""

    def __init__(self, port: str, verbose: bool) -> None:
        self.ser = serial.Serial(port, 115200, timeout=0.05)
        self.verbose = verbose
        self.seq = random.randrange(256)
        self.answers: dict[int, p.Frame] = {}  # by the seq they answer
        self.cond = threading.Condition()
        self.retransmissions = 0
        self.events: queue.Queue[p.Message] = queue.Queue()
        self.history = p.SeqHistory()
        self.decoder = p.StreamDecoder()
        self.write_lock = threading.Lock()
        self.answer_times: list[float] = []
        self.running = True
        threading.Thread(target=self._read, daemon=True).start()

    def _write(self, data: bytes) -> None:
        with self.write_lock:
            self.ser.write(data)

    def _read(self) -> None:
        while self.running:
            try:
                data = self.ser.read(1)  # blocks up to the timeout for the first byte
                data += self.ser.read(self.ser.in_waiting)
            except (serial.SerialException, OSError, TypeError):
                return  # closed
            for frame in self.decoder.feed(data):
                if self.verbose:
                    print("  rx:", frame.seq, frame.message)
                if isinstance(frame.message, (p.Ack, p.Nak)):
                    with self.cond:
                        self.answers[frame.seq] = frame
                        self.cond.notify_all()
                    continue
                self._write(p.encode_frame(frame.seq, p.Ack()))
                seen, _ = self.history.lookup(frame)
                if not seen:
                    self.history.add(frame)
                    self.events.put(frame.message)

    def send(self, msg: p.Message | None, *, raw: bytes | None = None) -> tuple[int, bytes]:
        """Write a message (or resend raw bytes) without waiting; (seq, raw) for wait_answer."""
        if raw is None:
            seq = self.seq
            self.seq = p.seq_next(self.seq)
            raw = p.encode_frame(seq, msg)
        self._write(raw)
        return p.decode_frame(raw[:-1]).seq, raw

    def wait_answer(self, seq: int, raw: bytes, *, tries: int = 5) -> p.NakReason | None:
        """Wait for the ACK (None) or NAK (its reason) of seq, resending raw every 100 ms."""
        t0 = time.perf_counter()
        for attempt in range(tries):
            if attempt:
                self.retransmissions += 1
                self._write(raw)
            end = time.perf_counter() + 0.1
            with self.cond:
                while seq not in self.answers and (left := end - time.perf_counter()) > 0:
                    self.cond.wait(left)
                ans = self.answers.pop(seq, None)
            if ans is not None:
                self.answer_times.append(time.perf_counter() - t0)
                return None if isinstance(ans.message, p.Ack) else p.NakReason(ans.message.reason)
        raise AssertionError(f"no answer to {p.decode_frame(raw[:-1]).message}")

    def request(self, msg: p.Message | None, *, raw: bytes | None = None
                ) -> tuple[p.NakReason | None, bytes]:
        seq, raw = self.send(msg, raw=raw)
        return self.wait_answer(seq, raw), raw

    def event(self, cls: type[p.Message], timeout: float = 2.0) -> p.Message:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                msg = self.events.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(msg, cls):
                return msg
        raise AssertionError(f"no {cls.__name__} event")

    def close(self) -> None:
        self.running = False
        self.ser.close()


def expect(answer: p.NakReason | None, result: tuple[p.NakReason | None, bytes]) -> None:
    got = result[0]
    assert got is answer, f"expected {answer and answer.name or 'ACK'}, got {got and got.name or 'ACK'}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    for path in (SIM, ELF):
        if not path.exists():
            print(f"missing {path}: run make -C firmware_bridge all sim", file=sys.stderr)
            return 2

    t_start = time.perf_counter()
    sim = Harness(args.verbose)
    startup = time.perf_counter() - t_start
    sim.expect("PIN", "FAULT", "1")  # boot: safe state
    link = Link(sim.pty, args.verbose)
    results: dict[str, str] = {"start to pty": f"{startup * 1000:.1f} ms"}
    stop_heartbeat = threading.Event()
    try:
        # HELLO, CONFIG -> READY
        session = random.randrange(1, 2**32)
        ans, _ = link.request(p.Hello(session=session, host_major=0, host_minor=1))
        assert ans is None, ans
        while (info := link.event(p.Info)).session != session:
            pass  # the boot announcement (session 0) may come first
        assert info.protocol_version == p.PROTOCOL_VERSION and info.max_pending == 16
        expect(p.NakReason.NOT_CONFIGURED, link.request(p.Arm(1, 100)))
        pulse_ms, hb_ms = 50, 1000  # a generous timeout: the machine may be busy
        expect(None, link.request(p.Config(pulse_ms, hb_ms, p.Verdict.REJECT, p.Verdict.REJECT)))
        sim.expect("PIN", "FAULT", "0")
        sim.expect("PIN", "READY", "1")

        def heartbeat() -> None:
            while not stop_heartbeat.wait(0.1):
                try:
                    link.request(p.Heartbeat())
                except AssertionError:
                    pass  # the next one may get through

        hb = threading.Thread(target=heartbeat, daemon=True)
        hb.start()

        # part present -> TRIGGER with the MCU's time of the first edge
        sim.cmd("PART_PRESENT 1")
        t_edge = int(sim.expect("IN", "PART_PRESENT", "1")[3])
        trig = link.event(p.Trigger)
        assert trig.count == 1
        mcu_edge = trig.t_ms * 1000 + trig.t_us
        results["trigger stamp (sim - mcu)"] = f"{t_edge - mcu_edge} us"
        sim.cmd("PART_PRESENT 0")
        sim.expect("IN", "PART_PRESENT", "0")
        time.sleep(0.01)
        assert link.events.empty(), "a part leaving must not trigger"

        # ARM + DECIDE REJECT: one pulse of exactly pulse_ms (simulated time)
        latencies = []
        for part in range(1, 11):
            expect(None, link.request(p.Arm(part, 1000)))
            t0 = time.perf_counter()
            seq, raw = link.send(p.Decide(part, p.Verdict.REJECT))
            on = sim.expect("PIN", "REJECT", "1")
            latencies.append(time.perf_counter() - t0)
            ans = link.wait_answer(seq, raw)
            off = sim.expect("PIN", "REJECT", "0", timeout=1)
            width = int(off[3]) - int(on[3])
            assert ans is None and abs(width - pulse_ms * 1000) <= 10, width
            applied = link.event(p.Applied)
            assert applied.part_id == part and applied.action is p.Verdict.REJECT
            time.sleep(pulse_ms / 1000 + 0.005)  # the gap before another pulse may start
        results["REJECT pulse width"] = f"{width} us (configured {pulse_ms} ms)"
        results["DECIDE written -> REJECT pin edge seen (wall, median of 10)"] = (
            f"{statistics.median(latencies) * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms")

        # the same DECIDE frame again (a retransmission): re-ACKed, not re-applied
        expect(None, link.request(None, raw=raw))
        sim.no_pin(0.15)
        expect(p.NakReason.PART_DECIDED, link.request(p.Decide(10, p.Verdict.PASS)))
        expect(p.NakReason.UNKNOWN_PART, link.request(p.Decide(999, p.Verdict.REJECT)))
        # PASS: no pulse
        expect(None, link.request(p.Arm(20, 1000)))
        expect(None, link.request(p.Decide(20, p.Verdict.PASS)))
        assert link.event(p.Applied).action is p.Verdict.PASS
        sim.no_pin(0.1)

        # deadline: not decided -> the firmware rejects on its own at the deadline
        t_before = sim.sim_time()
        expect(None, link.request(p.Arm(30, 200)))
        t_after = sim.sim_time()  # the ARM was applied between these two simulated times
        on = sim.expect("PIN", "REJECT", "1", timeout=1)
        fs = link.event(p.Failsafe)
        assert fs.part_id == 30 and fs.reason is p.FailsafeReason.DEADLINE
        assert fs.action is p.Verdict.REJECT
        t_on = int(on[3])
        assert t_before + 200_000 <= t_on <= t_after + 200_000, (t_before, t_after, t_on)
        results["ARM(200 ms) applied -> fail-safe pin (sim), bracket"] = (
            f"{(t_on - t_after) / 1000:.2f} .. {(t_on - t_before) / 1000:.2f} ms")
        sim.expect("PIN", "REJECT", "0", timeout=1)
        expect(p.NakReason.PART_FAILSAFED, link.request(p.Decide(30, p.Verdict.PASS)))

        # full table -> NAK, nothing else happens
        time.sleep(0.06)
        for part in range(100, 116):
            expect(None, link.request(p.Arm(part, 10000)))
        expect(p.NakReason.TABLE_FULL, link.request(p.Arm(200, 10000)))
        expect(p.NakReason.DUPLICATE_PART, link.request(p.Arm(105, 10000)))

        # round trips
        link.answer_times.clear()
        for _ in range(50):
            link.request(p.StatusRequest())  # answered after the STATUS before it has gone out
        status_rtt = statistics.median(link.answer_times)
        st = link.event(p.Status)
        link.answer_times.clear()
        for _ in range(50):
            link.request(p.Heartbeat())
        assert st.pending == 16 and st.flags & p.StatusFlag.READY
        results["bad frames seen by the bridge (STATUS)"] = str(st.rx_bad_frames)
        results["HEARTBEAT -> ACK round trip (wall, median of 50)"] = (
            f"{statistics.median(link.answer_times) * 1000:.2f} ms, max {max(link.answer_times) * 1000:.2f}")
        results["STATUS_REQUEST -> ACK back to back (median of 50)"] = f"{status_rtt * 1000:.2f} ms"

        # heartbeat loss: FAULT on, READY off, fail-safe for all 16 pending parts
        stop_heartbeat.set()
        hb.join()
        t_last = sim.sim_time()
        ready_off = sim.expect("PIN", "READY", "0", timeout=hb_ms / 1000 + 1)
        sim.expect("PIN", "FAULT", "1")
        results[f"heartbeats stopped -> READY off (sim, timeout {hb_ms} ms)"] = (
            f"{(int(ready_off[3]) - t_last) / 1000:.1f} ms")
        fault = link.event(p.Fault)
        assert fault.code == p.FaultCode.HEARTBEAT_LOST and fault.active == 1
        failed = {link.event(p.Failsafe).part_id for _ in range(16)}
        assert failed == set(range(100, 116)), failed
        pulses = 0
        for _ in range(16):
            sim.expect("PIN", "REJECT", "1", timeout=1)
            sim.expect("PIN", "REJECT", "0", timeout=1)
            pulses += 1
        results["heartbeat-loss fail-safe pulses"] = str(pulses)
        expect(p.NakReason.NOT_CONFIGURED, link.request(p.Arm(300, 100)))
        results["harness CPU"] = (
            f"{100 * sim.cpu_seconds() / (time.perf_counter() - t_start):.0f} % of a core")
        results["bad frames seen by host"] = str(link.decoder.bad_frames)
        results["host retransmissions"] = str(link.retransmissions)
    finally:
        stop_heartbeat.set()
        link.close()
        sim.close()

    print("sim smoke: OK")
    for key, value in results.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
