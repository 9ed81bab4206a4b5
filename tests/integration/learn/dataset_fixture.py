"""A small dataset in the ``edge-inspector-dataset/1`` layout that ``dataset export`` writes, built from
the judge's own prompt (:func:`~edge_inspector.judge.vlm.prompt.build_prompt`) on synthetic boards.

Each part's prompt segments become chat messages: the system text, then the user's text and images in
order; the answer is the judge's four-line form after the pre-filled ``defective:``. Images are small
(84 x 84) so that a tiny model trains on them in seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2

from edge_inspector.judge.vlm.prompt import ANSWER_PREFIX, ImagePart, Prompt, build_prompt
from edge_inspector.recipe import load_recipe
from edge_inspector.synth.pcb import BoardDesign, make_board, reference_board

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "configs/recipes/pcb.yaml"
SIDE = 84
SYSTEM_HEAD = "<|im_start|>system\n"
USER_HEAD = "<|im_end|>\n<|im_start|>user\n"
ASSISTANT_HEAD = "<|im_end|>\n<|im_start|>assistant\n"


def prompt_messages(prompt: Prompt, image_paths: list[str]) -> list[dict]:
    """The judge's prompt (prefix + suffix segments) as chat messages; images named by ``image_paths``
    in order. The pre-filled answer start is left out (it begins the assistant's answer)."""
    segments = list(prompt.prefix) + list(prompt.suffix)
    first, last = segments[0], segments[-1]
    assert isinstance(first, str) and first.startswith(SYSTEM_HEAD) and first.endswith("<|im_start|>user\n")
    assert isinstance(last, str) and last.endswith(ASSISTANT_HEAD + ANSWER_PREFIX)
    system = first[len(SYSTEM_HEAD):-len(USER_HEAD)]
    segments[-1] = last[:-len(ASSISTANT_HEAD + ANSWER_PREFIX)]
    content, images = [], iter(image_paths)
    for seg in segments[1:]:
        if isinstance(seg, ImagePart):
            content.append({"type": "image", "image": next(images)})
        elif seg:
            content.append({"type": "text", "text": seg})
    return [{"role": "system", "content": [{"type": "text", "text": system}]},
            {"role": "user", "content": content}]


def answer_text(defect: str | None) -> str:
    if defect is None:
        return f"{ANSWER_PREFIX} no\ndefect_type: none\nregion: none\ndescription: the board matches the reference"
    return f"{ANSWER_PREFIX} yes\ndefect_type: {defect}\nregion: none\ndescription: a trace is broken"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_dataset(root: Path, n_train: int = 4, n_val: int = 2, seed: int = 0) -> Path:
    """Write the dataset into ``root``; every other part is defective (an open trace)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    recipe = load_recipe(RECIPE)
    design = BoardDesign(seed=1)
    ref = cv2.resize(reference_board(design).image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "images/reference.png"), ref)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        defect = "open" if i % 2 else None
        board = make_board(design, seed=seed * 1000 + i, defects=[defect] if defect else 0)
        frame = cv2.resize(board.image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        name = f"images/part-{i:03d}.png"
        cv2.imwrite(str(root / name), frame)
        prompt = build_prompt(recipe, frame, part_reference=ref)
        messages = prompt_messages(prompt, ["images/reference.png", name])
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer_text(defect)}]})
        lines[split].append(json.dumps({"id": f"part-{i:03d}", "label": "defective" if defect else "good",
                                        "defect_type": defect, "messages": messages}))
    for split, rows in lines.items():
        (root / f"{split}.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    files = {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*"))
             if p.is_file() and p.name != "manifest.json"}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    manifest = {"format": "edge-inspector-dataset/1", "dataset_hash": digest, "files": files,
                "counts": {"train": n_train, "val": n_val}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root
