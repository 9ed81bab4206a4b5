"""``edge-inspector dataset export``: labelled inspections as chat conversations for fine-tuning.

Each example is built with the judge's own prompt (``judge.vlm.prompt.prompt_for``: the recipe's system
text, the reference images, the frame, the zoomed crops of the stored boxes, the question) and its
answer is the text the judge's constrained decoder writes (``prompt.answer_text``), so that a model is
trained on exactly what it is shown and asked at inference. The frame is the plain frame saved beside
a reject image (``outputs/images.py``, ``<part>.frame.png``); a labelled part without one (a pass, an
image pruned, a store from before frames were kept) is skipped and counted. The crops are cut from it
with the config's ``regions.zoom`` (what the regions stage did), the first ``max_regions`` shown.

The answer: the label (good / defective) and defect type; for a defective part the region is the one
the judge's own defective votes named most (when in range), else region 1 (the best box) when there
are crops, else none; the description is the reviewer's note, else a template (``describe.py``).

Layout of ``DIR``: ``train.jsonl`` and ``val.jsonl`` (one conversation a line: ``{"id", "label",
"defect_type", "messages"}``, images as ``{"type": "image", "image": "images/<file>.png"}`` relative
to ``DIR``), ``images/`` (PNG), ``manifest.json`` (format, dataset hash, sha256 per file, counts,
config and recipe versions, the prompt's image limits). A part goes to ``val`` when a hash of its id
falls under ``val_share``: the same part is never in both, whatever else changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog

from edge_inspector.dataset.describe import describe
from edge_inspector.envelope import Box
from edge_inspector.errors import EdgeInspectorError, ImageError
from edge_inspector.imageio import load_image
from edge_inspector.judge.vlm.config import PromptImages, VlmJudgeConfig
from edge_inspector.judge.vlm.prompt import ImagePart, Prompt, answer_text, chat_messages, prompt_for
from edge_inspector.outputs.images import frame_path_for
from edge_inspector.outputs.store import TABLE, connect
from edge_inspector.recipe import Recipe, load_recipe
from edge_inspector.regions.zoom import ZoomConfig, zoom
from edge_inspector.review import labels

log = structlog.get_logger(__name__)

FORMAT = "edge-inspector-dataset/1"
SPLITS = ("train", "val")
IMAGES = "images"


@dataclass(slots=True)
class Example:
    """One conversation's material: the part's frame, boxes and crops (as the judge got them) and the
    answer it should have given."""

    id: str
    label: str  # good | defective
    defect_type: str | None
    frame: np.ndarray
    boxes: tuple[Box, ...]
    crops: tuple[np.ndarray, ...]
    region: int | None  # 1-based, among the crops shown; None: no region
    description: str
    part_reference: np.ndarray | None = None  # replaces the recipe's references (synthetic boards)
    source: str = "station"


@dataclass(slots=True)
class Context:
    recipe: Recipe
    recipe_path: Path
    references: tuple[np.ndarray, ...]
    limits: PromptImages
    zoom: ZoomConfig
    skipped: Counter = field(default_factory=Counter)
    other_recipe: int = 0  # examples whose part was judged under another version of the recipe

    @property
    def recipe_version(self) -> str:
        """As the judge stamps rows (``RecipeSource.version``)."""
        return hashlib.sha256(self.recipe_path.read_bytes()).hexdigest()[:12]


def split_of(part_id: str, val_share: float) -> str:
    """train or val, fixed by the part id alone."""
    h = hashlib.sha256(b"split:" + part_id.encode()).digest()
    return "val" if int.from_bytes(h[:8], "big") / 2.0 ** 64 < val_share else "train"


def boxes_of(stored: str | None) -> tuple[Box, ...]:
    """The store's ``boxes`` column (``Box.to_json`` each, best first) back as boxes."""
    out = []
    for b in json.loads(stored or "[]"):
        x1, y1, x2, y2 = b["box"]
        out.append(Box(int(x1), int(y1), int(x2), int(y2), float(b.get("score", 0.0)),
                       int(b.get("area_px", 0))))
    return tuple(out)


def voted_region(stored_votes: str | None, n_regions: int) -> int | None:
    """The region the judge's defective votes named most (in range), None when they named none."""
    counts = Counter(v.get("region") for v in json.loads(stored_votes or "[]")
                     if isinstance(v, dict) and v.get("defective") and isinstance(v.get("region"), int)
                     and 1 <= v["region"] <= n_regions)
    return min(counts, key=lambda r: (-counts[r], r)) if counts else None


def station_examples(db, ctx: Context) -> Iterator[Example]:
    """The labelled inspections of the store, by part id, each with its label in force."""
    names = set(ctx.recipe.defect_names)
    version = ctx.recipe_version
    latest = labels.latest(db)
    for part_id in sorted(latest):
        lab = latest[part_id]
        rows = list(db.query(f"SELECT part_id, image_path, boxes, votes, recipe_version FROM {TABLE} "
                             "WHERE part_id = ?", [part_id]))
        if not rows:
            ctx.skipped["no_inspection"] += 1  # pruned by retention since it was labelled
            continue
        row = rows[0]
        defective = lab["label"] == "defective"
        dtype = lab["defect_type"] if defective else None
        if defective and dtype not in names:
            ctx.skipped["defect_type_not_in_recipe"] += 1  # the answer form needs one of the taxonomy
            continue
        if not row["image_path"]:
            ctx.skipped["no_image"] += 1
            continue
        frame_file = frame_path_for(row["image_path"])
        try:
            frame = load_image(frame_file)
        except ImageError:
            ctx.skipped["no_frame"] += 1  # an overlay alone is not what the judge saw
            continue
        boxes = boxes_of(row["boxes"])
        crops = zoom(frame, boxes, ctx.zoom) if boxes else ()
        shown = min(len(crops), ctx.limits.max_regions)
        region = None
        if defective and shown:
            region = voted_region(row["votes"], shown) or 1
        box = boxes[region - 1] if region else None
        note = " ".join((lab["note"] or "").split())
        text = note or describe(dtype, box, frame.shape, part_id)
        ctx.other_recipe += bool(row["recipe_version"]) and row["recipe_version"] != version
        yield Example(part_id, lab["label"], dtype, frame, boxes, tuple(crops), region, text)


def _safe(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "part"
    return clean if clean == name else f"{clean[:60]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class ImageWriter:
    """Writes the prompt's images as PNG under ``DIR/images`` and returns the dataset's image items.
    Identical images (the recipe's references) are written once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / IMAGES).mkdir(parents=True, exist_ok=True)
        self.by_content: dict[str, str] = {}
        self.files: dict[str, Path] = {}

    def item(self, part: ImagePart, stem: str) -> dict[str, str]:
        img = np.ascontiguousarray(part.image)
        key = hashlib.sha256(f"{img.shape}{img.dtype}".encode() + img.data).hexdigest()
        rel = self.by_content.get(key)
        if rel is None:
            rel = f"{IMAGES}/{stem}.png" if part.role != "reference" else f"{IMAGES}/reference-{key[:12]}.png"
            ok, png = cv2.imencode(".png", img)
            if not ok:
                raise EdgeInspectorError(f"cannot encode the {part.role} image of {stem} as PNG")
            (self.root / rel).write_bytes(png.tobytes())
            self.by_content[key] = rel
            self.files[rel] = self.root / rel
        return {"type": "image", "image": rel, "role": part.role}


def prompt_of(ex: Example, ctx: Context) -> Prompt:
    """What the judge sends for this example (the same call the VLM judge makes)."""
    return prompt_for(ctx.recipe, ex.frame, ex.crops, ex.boxes, ctx.references, ex.part_reference,
                      ctx.limits.max_regions)


def conversation(ex: Example, ctx: Context, images: ImageWriter) -> dict[str, Any]:
    """One JSONL line: the judge's messages, images as files, the answer as the last message."""
    prompt = prompt_of(ex, ctx)
    stem = _safe(ex.id)
    counter = {"crop": 0}

    def item(part: ImagePart) -> dict[str, str]:
        if part.role == "crop":
            counter["crop"] += 1
            return images.item(part, f"{stem}-crop{counter['crop']}")
        return images.item(part, f"{stem}-{part.role}")

    messages = chat_messages(prompt.prefix + prompt.suffix, item)
    last = messages[-1]
    prefill = "".join(p["text"] for p in last["content"] if p["type"] == "text")
    if last["role"] != "assistant" or prefill != prompt.answer_prefix:
        raise EdgeInspectorError("the judge's prompt no longer ends with the pre-filled answer")
    answer = answer_text(prompt, ex.label == "defective", ex.defect_type, ex.region, ex.description)
    messages[-1] = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    return {"id": ex.id, "label": ex.label, "defect_type": ex.defect_type, "messages": messages}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_hash(files: dict[str, str]) -> str:
    """The hash of the data set's content: every file's path and sha256 (the manifest aside)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def context_for(cfg, recipe_path: str | Path | None = None) -> Context:
    """The judge's recipe (``judge.recipe``, else ``recipe_path``, else the shipped default), its
    references, the prompt's image limits and the regions stage's zoom, from the station's config."""
    judge = cfg.judge
    path = recipe_path or getattr(judge, "recipe", None) or VlmJudgeConfig.model_fields["recipe"].default
    recipe = load_recipe(path)
    try:
        refs = tuple(load_image(p) for p in recipe.references)
    except ImageError as exc:
        raise EdgeInspectorError(f"recipe {path}: {exc}") from None
    limits = PromptImages(**{k: getattr(judge, k) for k in PromptImages.model_fields}) \
        if isinstance(judge, PromptImages) else PromptImages()
    return Context(recipe, Path(path), refs, limits, getattr(cfg.regions, "zoom", None) or ZoomConfig())


def export(cfg, out: Path, val_share: float = 0.2, extra: Iterable[Example] = (),
           recipe_path: str | Path | None = None, ctx: Context | None = None,
           config_path: str | Path | None = None) -> dict[str, Any]:
    """Write the data set of the store's labelled inspections (and ``extra`` examples, the synthetic
    ones) to ``out``; returns the manifest."""
    if not 0.0 <= val_share < 1.0:
        raise EdgeInspectorError(f"--val-share must be in [0, 1), not {val_share}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise EdgeInspectorError(f"{out} is not empty: export into a new folder (a data set is never mixed)")
    if not cfg.db_path.exists():
        raise EdgeInspectorError(f"no database at {cfg.db_path}: has the station run yet?")
    ctx = ctx or context_for(cfg, recipe_path)
    out.mkdir(parents=True, exist_ok=True)
    images = ImageWriter(out)
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    counts = {s: {"examples": 0, "good": 0, "defective": 0, "types": Counter(), "synthetic": 0}
              for s in SPLITS}
    db = connect(cfg.db_path, readonly=True)
    seen: set[str] = set()
    try:
        for ex in _chain(station_examples(db, ctx), extra):
            if ex.id in seen:
                raise EdgeInspectorError(f"two examples with the id {ex.id!r}")
            seen.add(ex.id)
            split = split_of(ex.id, val_share)
            lines[split].append(json.dumps(conversation(ex, ctx, images), ensure_ascii=False))
            c = counts[split]
            c["examples"] += 1
            c[ex.label] += 1
            c["synthetic"] += ex.source == "synthetic"
            if ex.defect_type:
                c["types"][ex.defect_type] += 1
    finally:
        db.conn.close()
    files: dict[str, str] = {}
    for split in SPLITS:
        path = out / f"{split}.jsonl"
        path.write_text("".join(line + "\n" for line in lines[split]), encoding="utf-8")
        files[path.name] = sha256_file(path)
    for rel, path in images.files.items():
        files[rel] = sha256_file(path)
    manifest = {
        "format": FORMAT,
        "dataset_hash": dataset_hash(files),
        "files": dict(sorted(files.items())),
        "counts": {
            **{s: {**counts[s], "types": dict(sorted(counts[s]["types"].items()))} for s in SPLITS},
            "total": sum(counts[s]["examples"] for s in SPLITS),
            "skipped": dict(sorted(ctx.skipped.items())),
            "judged_with_another_recipe": ctx.other_recipe,  # built with this one all the same
        },
        "split": {"by": "sha256 of the part id", "val_share": val_share},
        "config": {"path": str(config_path or ""), "fingerprint": cfg.fingerprint(),
                   "database": str(cfg.db_path)},
        "recipe": {"path": str(ctx.recipe_path), "product": ctx.recipe.product,
                   "version": ctx.recipe_version,
                   "content_hash": ctx.recipe.content_hash(), "defect_types": list(ctx.recipe.defect_names)},
        "prompt_images": ctx.limits.model_dump(),
        "zoom": ctx.zoom.model_dump(),
        "answer_prefix": "defective:",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("dataset_exported", out=str(out), examples=manifest["counts"]["total"],
             skipped=manifest["counts"]["skipped"], dataset_hash=manifest["dataset_hash"][:12])
    return manifest


def _chain(*parts: Iterable[Example]) -> Iterator[Example]:
    for part in parts:
        yield from part
