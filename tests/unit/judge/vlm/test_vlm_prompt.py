"""Prompt building: the recipe's knowledge, labelled images, the cached prefix and the part's suffix."""

from __future__ import annotations

import numpy as np

from edge_inspector.envelope import Box
from edge_inspector.judge.vlm.prompt import ANSWER_PREFIX, ImagePart, build_prompt, system_text
from edge_inspector.recipe import load_recipe

FRAME = np.zeros((32, 48, 3), np.uint8)
CROPS = (np.ones((20, 20), np.uint8), np.full((20, 20), 2, np.uint8))
BOXES = (Box(1, 2, 11, 12, 3.5), Box(20, 5, 30, 15, 2.0))


def texts(segments):
    return "".join(s for s in segments if isinstance(s, str))


def images(segments):
    return [s for s in segments if isinstance(s, ImagePart)]


def test_system_text_carries_the_recipe(recipe_path):
    recipe = load_recipe(recipe_path)
    text = system_text(recipe)
    assert "Product: test board." in text
    assert "- short: copper joins two traces" in text and "- pin_hole: a small hole in copper" in text
    assert "- shifts are not defects" in text
    assert "one of short, pin_hole, or none" in text
    assert text.index("Defect types:") < text.index("Rules:") < text.index("Answer in exactly this form")


def test_recipe_references_form_the_cached_prefix(recipe_path):
    recipe = load_recipe(recipe_path)
    ref = np.zeros((8, 8), np.uint8)
    p = build_prompt(recipe, FRAME, CROPS, BOXES, references=[ref])
    assert [i.role for i in images(p.prefix)] == ["reference"]
    assert images(p.prefix)[0].image is ref
    assert [i.role for i in images(p.suffix)] == ["frame", "crop", "crop"]
    assert all(i.image is c for i, c in zip(images(p.suffix)[1:], CROPS, strict=True))
    assert texts(p.prefix).startswith("<|im_start|>system\n")
    assert "Known-good reference image" in texts(p.prefix)
    assert p.n_regions == 2


def test_each_image_is_labelled_in_order(recipe_path):
    p = build_prompt(load_recipe(recipe_path), FRAME, CROPS, BOXES, references=[FRAME])
    labels = [s for s in p.suffix if isinstance(s, str)]
    assert "Frame under inspection" in labels[0]
    assert "Region 1" in labels[1] and "x1=1 y1=2 x2=11 y2=12" in labels[1] and "3.50" in labels[1]
    assert "Region 2" in labels[2]
    assert p.suffix[-1].endswith(f"<|im_start|>assistant\n{ANSWER_PREFIX}")


def test_the_prefix_does_not_depend_on_the_part(recipe_path):
    recipe = load_recipe(recipe_path)
    a = build_prompt(recipe, FRAME, CROPS, BOXES, references=[FRAME])
    b = build_prompt(recipe, FRAME[:10], (), (), references=[FRAME])
    assert texts(a.prefix) == texts(b.prefix)
    assert all(i.image is FRAME for i in images(a.prefix) + images(b.prefix))
    assert b.n_regions == 0 and "Region" not in texts(b.suffix)


def test_a_part_reference_replaces_the_recipe_references_in_the_suffix(recipe_path):
    recipe = load_recipe(recipe_path)
    part_ref = np.full((8, 8), 9, np.uint8)
    p = build_prompt(recipe, FRAME, (), (), references=[FRAME], part_reference=part_ref)
    assert images(p.prefix) == []
    first = images(p.suffix)[0]
    assert first.role == "reference" and first.image is part_ref
    assert texts(p.suffix).index("Known-good reference") < texts(p.suffix).index("Frame under inspection")


def test_without_references_the_question_does_not_mention_one(recipe_path):
    p = build_prompt(load_recipe(recipe_path), FRAME, (), (), references=[])
    assert "reference" not in texts(p.suffix).lower()


def test_the_chat_messages_are_the_prompt_in_order_and_the_answer_is_one_the_form_allows(recipe_path):
    from edge_inspector.judge.vlm.parse import parse_answer
    from edge_inspector.judge.vlm.prompt import answer_text, chat_messages, prompt_for

    recipe = load_recipe(recipe_path)
    ref = np.zeros((8, 8), np.uint8)
    p = prompt_for(recipe, FRAME, CROPS, BOXES, [ref], None, max_regions=1)  # the judge's call
    assert p.n_regions == 1
    msgs = chat_messages(p.prefix + p.suffix, lambda part: {"type": "image", "image": part.role})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[0]["content"] == [{"type": "text", "text": system_text(recipe)}]
    user = msgs[1]["content"]
    assert [c["image"] for c in user if c["type"] == "image"] == ["reference", "frame", "crop"]
    flat = "".join(c["text"] if c["type"] == "text" else "<img>" for c in user)
    assert flat == texts(p.prefix + p.suffix).split("<|im_start|>user\n")[1].split("<|im_end|>")[0].replace(
        "Known-good reference image of this product:", "Known-good reference image of this product:<img>", 1
    ).replace("Frame under inspection:", "Frame under inspection:<img>").replace(
        "anomaly score 3.50):", "anomaly score 3.50):<img>")
    assert msgs[2]["content"] == [{"type": "text", "text": ANSWER_PREFIX}]  # the pre-filled start

    yes = answer_text(p, True, "short", 1, "a bridge\nbetween traces")
    assert yes == "defective: yes\ndefect_type: short\nregion: 1\ndescription: a bridge between traces"
    assert yes[len(ANSWER_PREFIX):].startswith(tuple(p.form.heads))  # the constrained decoder's text
    vote = parse_answer(yes, recipe.defect_names, p.n_regions)
    assert (vote.defective, vote.defect_type, vote.region, vote.description) == (
        True, "short", 1, "a bridge between traces")
    no = answer_text(p, False, description="clean")
    assert no == "defective: no\ndefect_type: none\nregion: none\ndescription: clean"
    assert parse_answer(no, recipe.defect_names, 1).defective is False
    for bad in ((True, "scratch", 1), (True, "short", 2), (True, None, None)):
        try:
            answer_text(p, *bad)
        except ValueError as exc:
            assert "does not allow" in str(exc)
        else:
            raise AssertionError(f"{bad} was allowed")
