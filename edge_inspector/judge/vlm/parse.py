"""A tolerant parser for the judge's answers. Whatever does not give a clear decision is an invalid
vote (``Vote.defective is None``), never a pass.

Accepted: the four-line form the prompt asks for (``defective: yes`` ...), the same as a JSON object
(in a code fence or not, single quotes too), markdown around keys and values (``**Defect type**:``,
``- **region:** 1``, headings), keys in any case, a key the model repeats (``defective: defective: no``,
or the pre-filled key alone on its line with the value on the next), values quoted or not. Decisions:
yes/true/defective/abnormal and no/false/none/nothing/normal/ok/"not defective"/"non-defective"/
"defect-free", in any case, with trailing words or punctuation ("No.", "none found"). A defect type
matches the taxonomy by its leading words ("Short circuit" is ``short``, "Mouse bite" ``mousebite``).
A truncated answer counts when its decision is complete. Rejected: empty text, prose, a refusal, a
decision that is not yes/no ("n/a", numbers, lists, "maybe"), the template echoed back ("yes or
no"), two different decisions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from edge_inspector.envelope import Vote

_TRUE = {"yes", "true", "defective", "reject", "abnormal", "anomalous"}
_FALSE = {"no", "false", "ok", "good", "pass", "none", "nothing", "normal"}
_NEGATED = {("not", "defective"), ("non", "defective"), ("defect", "free")}
_NONE = {"", "none", "null", "n/a", "na", "-", "nil"}
_KEY = {"defective": "defective", "is_defective": "defective", "defect_type": "defect_type",
        "type": "defect_type", "defect": "defect_type", "region": "region", "description": "description",
        "reason": "description"}
_LINE = re.compile(r'^[ \t*>#\-`]*["\'`]?([A-Za-z_ ]+?)["\'`*]*[ \t]*[:=][ \t]*(.*?)[ \t]*,?[ \t]*$')
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.S)
_INT = re.compile(r"-?\d+")
_WORD = re.compile(r"[a-z0-9]+")
_QUOTES = "\"'`*"
MAX_DESCRIPTION = 200


def _decision(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None  # numbers, lists, null: wrong type
    words = _WORD.findall(value.lower())
    if not words:
        return None
    if tuple(words[:2]) in _NEGATED:
        return False
    if len(words) > 1 and (words[1] == "or" or {words[0], words[1]} <= _TRUE | _FALSE
                           and (words[0] in _TRUE) != (words[1] in _TRUE)):
        return None  # the template echoed back: "yes or no", "yes/no"
    if words[0] in _TRUE:
        return True
    if words[0] in _FALSE:
        return False
    return None


def _key(name: str) -> str | None:
    return _KEY.get(re.sub(r"[\s\-]+", "_", name.strip().lower()))


def _defect_type(value: object, taxonomy: Sequence[str]) -> str | None:
    if not isinstance(value, str) or value.strip().strip(_QUOTES + ".").strip().lower() in _NONE:
        return None
    words = _WORD.findall(value.lower())
    if not words or words[0] in _NONE:
        return None
    # the longest name first, so that "spurious copper" is not read as "spur..."
    for name in sorted(taxonomy, key=lambda n: (-n.count("_"), -len(n))):
        parts = name.split("_")
        if words[:len(parts)] == parts:
            return name
        joined = name.replace("_", "")
        if any("".join(words[:j]) == joined for j in range(1, len(parts) + 2)):
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
    return {_key(k): v for k, v in obj.items() if isinstance(k, str) and _key(k)}


def _clean(value: str, key: str) -> str:
    value = value.strip().strip(_QUOTES).strip()
    while (m := _LINE.match(value)) and _key(m.group(1)) == key:  # "defective: defective: no"
        value = m.group(2).strip().strip(_QUOTES).strip()
    return value


def _fields_from_lines(text: str) -> tuple[dict[str, object], bool]:
    """Key-value pairs, one a line; a key with no value takes the next line that is not a key. The
    flag says the decision appeared twice with different values."""
    fields: dict[str, object] = {}
    conflict = False
    pending: str | None = None
    for line in text.splitlines():
        m = _LINE.match(line)
        key = _key(m.group(1)) if m else None
        if key is None:
            if m is not None or not line.strip() or pending is None:
                pending = None if m is not None else pending
                continue
            key, value = pending, line
        else:
            value = m.group(2)
        value = _clean(value, key)
        pending = None
        if not value:
            pending = key
            continue
        if key not in fields:
            fields[key] = value
        elif key == "defective" and _decision(fields[key]) != _decision(value):
            conflict = True
    return fields, conflict


def parse_answer(text: str, taxonomy: Sequence[str], n_regions: int) -> Vote:
    """Parse one answer (the pre-filled ``defective:`` included) into a vote."""
    raw = text
    fence = _FENCE.search(text)
    body = fence.group(1) if fence else text
    fields = _fields_from_json(body)
    if fields is None:
        start = body.find("{")
        if start >= 0:  # broken, truncated or single-quoted JSON: one pair per comma
            obj = body[start:].replace("{", "\n").replace(",", "\n").replace("}", "\n")
            body = body[:start] + "\n" + obj
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
