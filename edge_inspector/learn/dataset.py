"""Reading a training dataset directory (``edge-inspector-dataset/1``), without torch.

Layout, as ``dataset export`` writes it::

    DIR/manifest.json   {"format": "edge-inspector-dataset/1", "dataset_hash": ..., "files": {relpath: sha256}}
    DIR/train.jsonl     one conversation a line
    DIR/val.jsonl
    DIR/images/...      the images the conversations name (paths relative to DIR)

A conversation line::

    {"id": PART_ID, "label": "good"|"defective", "defect_type": str|null,
     "messages": [{"role": "system", ...}?, {"role": "user", "content": [{"type": "image", "image": "images/x.png",
                  "role": "frame"|"crop"|"reference" (optional)},
                  {"type": "text", "text": ...}, ...]}, {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]}]}

Every problem is a :class:`DatasetError` naming the file, the line and what is wrong; the files the
manifest lists are checked against their sha256 (a dataset is trained on as it was exported).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_inspector.errors import EdgeInspectorError

FORMAT = "edge-inspector-dataset/1"
SPLITS = ("train", "val")
LABELS = ("good", "defective")
IMAGE_ROLES = ("frame", "crop", "reference")  # optional per image: the judge's size limit for it


class DatasetError(EdgeInspectorError):
    """The dataset directory is missing, malformed or does not match its manifest."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    label: str
    defect_type: str | None
    messages: tuple[dict[str, Any], ...]  # image paths made absolute
    line: int

    @property
    def prompt(self) -> list[dict[str, Any]]:
        """The messages before the assistant's answer (what the judge sends)."""
        return list(self.messages[:-1])

    @property
    def answer(self) -> str:
        return "".join(p["text"] for p in self.messages[-1]["content"])

    @property
    def images(self) -> list[Path]:
        return [Path(p["image"]) for m in self.messages for p in m["content"] if p["type"] == "image"]

    @property
    def image_roles(self) -> list[str | None]:
        """Each image's role (frame, crop, reference) where the dataset names it, else None."""
        return [p.get("role") for m in self.messages for p in m["content"] if p["type"] == "image"]


@dataclass(frozen=True, slots=True)
class Dataset:
    path: Path
    dataset_hash: str
    manifest: dict[str, Any]
    train: tuple[Example, ...]
    val: tuple[Example, ...]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _content(where: str, role: str, content: Any, root: Path) -> list[dict[str, str]]:
    """A message's content as a list of text and image parts (a plain string is one text part);
    image paths resolved against the dataset directory and checked."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise DatasetError(f"{where}: the {role} message's content must be a string or a non-empty list")
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image" and isinstance(part.get("image"), str):
            rel = Path(part["image"])
            img = rel if rel.is_absolute() else root / rel
            if not img.is_file():
                raise DatasetError(f"{where}: {role} content[{i}] names an image that is not there: {part['image']}")
            role_of = part.get("role")
            if role_of is not None and role_of not in IMAGE_ROLES:
                raise DatasetError(f"{where}: {role} content[{i}] role must be one of {', '.join(IMAGE_ROLES)}, "
                                   f"got {role_of!r}")
            parts.append({"type": "image", "image": str(img), **({"role": role_of} if role_of else {})})
        else:
            raise DatasetError(f"{where}: {role} content[{i}] must be {{'type': 'text', 'text': str}} or "
                               f"{{'type': 'image', 'image': path}}, got {json.dumps(part)[:80]}")
    return parts


def parse_example(raw: str, where: str, root: Path, line: int) -> Example:
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: a line must be a JSON object")
    for key in ("id", "label", "messages"):
        if key not in item:
            raise DatasetError(f"{where}: missing key {key!r}")
    if item["label"] not in LABELS:
        raise DatasetError(f"{where}: label must be one of {', '.join(LABELS)}, got {item['label']!r}")
    msgs = item["messages"]
    if not isinstance(msgs, list) or len(msgs) < 2:
        raise DatasetError(f"{where}: messages must be a list of at least a user and an assistant message")
    roles = [m.get("role") if isinstance(m, dict) else None for m in msgs]
    expected = (["system"] if roles[0] == "system" else []) + ["user"] + ["assistant"]
    if roles != expected:
        raise DatasetError(f"{where}: messages must be [system,] user, assistant; got {roles}")
    messages = tuple({"role": m["role"], "content": _content(where, m["role"], m.get("content"), root)}
                     for m in msgs)
    answer = messages[-1]["content"]
    if any(p["type"] != "text" for p in answer):
        raise DatasetError(f"{where}: the assistant's answer must be text parts only")
    if not "".join(p["text"] for p in answer).strip():
        raise DatasetError(f"{where}: the assistant's answer is empty")
    return Example(id=str(item["id"]), label=item["label"], defect_type=item.get("defect_type"),
                   messages=messages, line=line)


def read_split(path: Path, root: Path) -> tuple[Example, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise DatasetError(f"dataset {root}: no {path.name}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"dataset {root}: cannot read {path.name} ({exc})") from exc
    return tuple(parse_example(raw, f"{path} line {n}", root, n) for n, raw in enumerate(lines, 1) if raw.strip())


def load_dataset(path: Path, verify: bool = True) -> Dataset:
    """Read and check a dataset directory. ``verify``: every file the manifest lists matches its hash."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset {root}: not a directory")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"dataset {root}: no manifest.json (was it written by 'dataset export'?)") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"dataset {root}: manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise DatasetError(f"dataset {root}: manifest.json format must be {FORMAT!r}, got {got!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not isinstance(manifest.get("dataset_hash"), str):
        raise DatasetError(f"dataset {root}: manifest.json needs 'dataset_hash' (string) and 'files' (mapping)")
    if verify:
        for rel, digest in sorted(files.items()):
            f = root / rel
            if not f.is_file():
                raise DatasetError(f"dataset {root}: {rel} is listed in manifest.json but missing")
            if sha256_file(f) != digest:
                raise DatasetError(f"dataset {root}: {rel} does not match its sha256 in manifest.json "
                                   "(changed after export)")
    train, val = (read_split(root / f"{s}.jsonl", root) for s in SPLITS)
    if not train:
        raise DatasetError(f"dataset {root}: train.jsonl has no examples")
    return Dataset(path=root, dataset_hash=manifest["dataset_hash"], manifest=manifest, train=train, val=val)
