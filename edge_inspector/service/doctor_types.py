"""The doctor's vocabulary: the four results, a :class:`Result` row, the run's :class:`Options`.

Shared by :mod:`edge_inspector.service.doctor` (the runner) and its checks in
:mod:`~edge_inspector.service.doctor_devices` and :mod:`~edge_inspector.service.doctor_data`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    result: str  # PASS | WARN | FAIL | SKIP
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Options:
    serial: str | None = None  # a port to check instead of the config's
    baud: int | None = None
    broker: str | None = None  # host[:port] instead of the config's
    hashes: bool = True  # verify the model's SHA256SUMS
    timeout_s: float = 3.0


def _err(exc: BaseException) -> str:
    return str(exc) if getattr(exc, "exit_code", None) else f"{type(exc).__name__}: {exc}"

