"""A tolerant parser for the judge's answers. Whatever does not give a clear decision is an invalid
vote (``Vote.defective is None``), never a pass.

Accepted: the four-line form the prompt asks for (``defective: yes`` ...), the same as a JSON object
(in a code fence or not), keys in any case, values quoted or not, booleans as yes/no/true/false. A
truncated answer counts when its decision is complete. Rejected: empty text, prose, a refusal, a
decision that is not yes/no (numbers, lists, "maybe"), two different decisions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from edge_inspector.envelope import Vote

_TRUE = {"yes", "true", "defective", "reject"}
_FALSE = {"no", "false", "ok", "good", "pass"}
_NONE = {"", "none", "null", "n/a", "na", "-", "nil"}
_KEY = {"defective": "defective", "is_defective": "defective", "defect_type": "defect_type",
        "type": "defect_type", "defect": "defect_type", "region": "region", "description": "description",
        "reason": "description"}
_LINE = re.compile(r'^[\s*>#-]*["\']?([A-Za-z_ ]+?)["\']?\s*[:=]\s*(.*?)\s*,?\s*$', re.M)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.S)
_INT = re.compile(r"-?\d+")
MAX_DESCRIPTION = 200


def _decision(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None  # numbers, lists, null: wrong type
    words = re.findall(r"[a-z]+", value.lower())
    if not words:
        return None
    if words[0] in _TRUE:
        return True
    if words[0] in _FALSE or words[:2] == ["not", "defective"]:
        return False
    return None


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().strip("\"'`.*").lower())


def _defect_type(value: object, taxonomy: Sequence[str]) -> str | None:
    if not isinstance(value, str) or _norm(value) in _NONE:
        return None
    v = _norm(value)
    for name in taxonomy:
        if v == name or v.replace("_", "") == name.replace("_", ""):
            return name
    return None  # not in the taxonomy: the decision stands, the type is unknown


def _region(value: object, n_regions: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        r = value
    elif isinstance(value, str) and (m := _INT.search(value)):
        r = int(m.group())
    else:
        return None
    return r if 1 <= r <= n_regions else None


def _fields_from_json(text: str) -> dict[str, object] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    return {_KEY[k.strip().lower()]: v for k, v in obj.items()
            if isinstance(k, str) and k.strip().lower() in _KEY}


def _fields_from_lines(text: str) -> tuple[dict[str, object], bool]:
    """Key-value pairs; the flag says a key appeared twice with different values."""
    fields: dict[str, object] = {}
    conflict = False
    for key, value in _LINE.findall(text):
        k = _KEY.get(key.strip().lower().replace(" ", "_"))
        if k is None:
            continue
        value = value.strip().strip("\"'`*").strip()
        if k in fields and fields[k] != value:
            conflict = conflict or k == "defective"
            continue
        fields[k] = value
    return fields, conflict


def parse_answer(text: str, taxonomy: Sequence[str], n_regions: int) -> Vote:
    """Parse one answer (the pre-filled ``defective:`` included) into a vote."""
    raw = text
    fence = _FENCE.search(text)
    body = fence.group(1) if fence else text
    fields = _fields_from_json(body)
    if fields is None:
        if body.lstrip().startswith("{"):  # broken or truncated JSON: one pair per comma
            body = body.replace("{", "\n").replace(",", "\n").replace("}", "\n")
        fields, conflict = _fields_from_lines(body)
        if conflict:
            return Vote(defective=None, raw=raw)
    defective = _decision(fields.get("defective"))
    if defective is None:
        return Vote(defective=None, raw=raw)
    desc = fields.get("description")
    desc = desc.strip()[:MAX_DESCRIPTION] if isinstance(desc, str) else ""
    if not defective:
        return Vote(defective=False, description=desc, raw=raw)
    return Vote(defective=True, defect_type=_defect_type(fields.get("defect_type"), taxonomy),
                region=_region(fields.get("region"), n_regions), description=desc, raw=raw)
