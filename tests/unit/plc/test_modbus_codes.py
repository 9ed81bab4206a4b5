"""RESULT_CODE numbers are a fixed wire table, the one docs/plc.md lists, whatever the enum's order."""

from __future__ import annotations

import enum
import importlib.util
import re
from pathlib import Path

from edge_inspector import envelope
from edge_inspector.envelope import Reason

DOC = Path(__file__).resolve().parents[3] / "docs" / "plc.md"


def documented() -> dict[str, int]:
    row = next(line for line in DOC.read_text().splitlines() if line.startswith("| 7 | RESULT_CODE"))
    return {name: int(num) for num, name in re.findall(r"(\d+) ([a-z_]+)[,;]", row.split("|")[3])}


def test_every_reason_has_the_documented_code_and_codes_are_unique():
    from edge_inspector.plc import modbus

    doc = documented()
    assert {r.value: modbus.RESULT_CODES[r] for r in Reason} == {r.value: doc[r.value] for r in Reason}
    assert modbus.WIRE_CODES == doc
    assert len(set(modbus.WIRE_CODES.values())) == len(modbus.WIRE_CODES)


def test_a_reason_added_in_the_middle_of_the_enum_renumbers_nothing(monkeypatch):
    """A fresh copy of the module, imported while Reason has a new member before the others."""
    from edge_inspector.plc import modbus

    members = [(r.name, r.value) for r in Reason]
    members.insert(2, ("SOMETHING_NEW", "something_new"))
    monkeypatch.setattr(envelope, "Reason", enum.StrEnum("Reason", members))
    spec = importlib.util.spec_from_file_location("modbus_with_a_new_reason", modbus.__file__)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    codes = {r.value: c for r, c in copy.RESULT_CODES.items()}
    assert codes["paused"] == 9 and codes["camera_offline"] == 8 and codes["timeout"] == 6
    assert codes["something_new"] == copy.UNKNOWN_CODE  # until it is given the next free number
