"""Constrained decoding over the tiny Qwen tokenizer (a real byte-level BPE, no model): whatever the
logits, every sampled answer spells the form, parses, and names a type and region that exist."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge_inspector.judge.vlm.parse import parse_answer
from edge_inspector.judge.vlm.prompt import ANSWER_PREFIX, NO_WORDS, YES_WORDS, AnswerForm, choice_form, judge_form

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tools"))

TAXONOMY = ("open", "short", "spur", "spurious_copper", "pin_hole")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two on a shared 2-core machine (no pool contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok():
    from make_tiny_models import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def table(tok):
    from edge_inspector.judge.vlm.constrain import TokenTable

    stops = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    return TokenTable(tok, len(tok) + 7, stops, "cpu")  # logits wider than the tokenizer, as in Qwen


def walk(constraint, rows: int, steps: int, seed: int, scale: float = 3.0):
    """Sample ``rows`` answers from random logits through the constraint."""
    g = torch.Generator().manual_seed(seed)
    states, tokens = constraint.start(rows), []
    for _ in range(steps):
        logits = torch.randn(rows, constraint.table.width, generator=g) * scale
        probs = constraint.apply(states, logits).softmax(-1)
        nxt = torch.multinomial(probs, 1, generator=g).squeeze(1).tolist()
        tokens.append(nxt)
        states = constraint.advance_all(states, nxt)
    return states, [list(col) for col in zip(*tokens)]


def text_of(tok, table, row) -> str:
    cut = next((i for i, t in enumerate(row) if t in table.stops), len(row))
    return tok.decode(row[:cut])


@pytest.mark.parametrize("n_regions", [0, 1, 3])
def test_random_logits_always_give_a_valid_vote(tok, table, n_regions):
    from edge_inspector.judge.vlm.constrain import FormConstraint

    form = judge_form(TAXONOMY, n_regions)
    c = FormConstraint(form, table)
    seen = set()
    for seed in range(6):
        states, rows = walk(c, rows=8, steps=60, seed=seed)
        assert all(c.complete(s) for s in states)  # every head is spelled within 60 tokens
        for row in rows:
            text = text_of(tok, table, row)
            assert any(text.startswith(h) for h in form.heads)
            assert "\n" not in text.split("description:", 1)[1].rstrip("\n")  # the tail is one line
            vote = parse_answer(ANSWER_PREFIX + text, TAXONOMY, n_regions)
            assert vote.valid
            if vote.defective:
                assert vote.defect_type in TAXONOMY
                assert vote.region is None or 1 <= vote.region <= n_regions
            else:
                assert "defect_type: none\nregion: none" in text
            seen.add((vote.defective, vote.defect_type))
    assert {d for d, _ in seen} == {True, False}  # both decisions are reachable
    assert len({t for d, t in seen if d}) >= 3


def test_the_first_token_is_a_decision(tok, table):
    from edge_inspector.judge.vlm.constrain import FormConstraint

    c = FormConstraint(judge_form(TAXONOMY, 2), table)
    first = [table.texts[i] for i in c.allowed("").tolist()]
    words = [sp + w for w in YES_WORDS + NO_WORDS for sp in ("", " ")]
    assert first and all(any(w.startswith(t) for w in words) for t in first)
    assert " yes" in first and " no" in first  # the single tokens P(defective) reads
    mask = c.block(c.start(2))
    assert mask.shape == (2, table.width) and int((~mask[0]).sum()) == len(first)
    assert bool(mask[:, len(tok):].all())  # ids past the tokenizer are never sampled


def test_a_no_spells_none_and_none(tok, table):
    from edge_inspector.judge.vlm.constrain import FormConstraint

    c = FormConstraint(judge_form(TAXONOMY, 2), table)
    state = c.advance("", tok.encode(" no", add_special_tokens=False)[0])
    spelled = ""
    while not c.complete(state):  # every following token is forced: take the longest allowed
        ids = c.allowed(state).tolist()
        best = max(ids, key=lambda i: len(table.texts[i]))
        spelled += table.texts[best]
        state = c.advance(state, best)
    assert spelled == "\ndefect_type: none\nregion: none\ndescription:"


def test_the_tail_ends_at_a_line_end_then_only_a_stop(tok, table):
    from edge_inspector.judge.vlm.constrain import FormConstraint

    c = FormConstraint(judge_form(TAXONOMY, 1), table)
    head = judge_form(TAXONOMY, 1).heads[0]
    state = c.advance(head[:-1], tok.encode(":", add_special_tokens=False)[0])  # the head's last token
    assert state == "\x00tail"
    blocked = c.block([state])[0]
    newline = tok.encode("\n", add_special_tokens=False)[0]
    assert not bool(blocked[newline]) and not bool(blocked[table.stop_ids[0]])
    assert bool(blocked[tok.convert_tokens_to_ids("<|image_pad|>")])  # no special token in the text
    end = c.advance(state, newline)
    assert int((~c.block([end])[0]).sum()) == len(set(table.stop_ids))


def test_a_multiple_choice_form(tok, table):
    from edge_inspector.judge.vlm.constrain import FormConstraint

    c = FormConstraint(choice_form(("A", "B", "C")), table)
    states, rows = walk(c, rows=16, steps=4, seed=1)
    letters = {text_of(tok, table, r).strip() for r in rows}
    assert letters <= {"A", "B", "C"} and len(letters) >= 2
    assert all(s == "\x00end" for s in states)


def test_an_answer_form_must_be_prefix_free():
    with pytest.raises(ValueError, match="prefix-free"):
        AnswerForm((" A", " AB"))
    with pytest.raises(ValueError, match="at least one"):
        AnswerForm(())
    assert len(judge_form(TAXONOMY, 3).heads) == 6 * len(TAXONOMY) * 4 + 6


def test_the_logits_processor_follows_the_same_states(tok, table):
    from edge_inspector.judge.vlm.constrain import AnswerLogitsProcessor, FormConstraint

    c = FormConstraint(judge_form(TAXONOMY, 2), table)
    _, rows = walk(c, rows=3, steps=20, seed=4)
    proc = AnswerLogitsProcessor(FormConstraint(judge_form(TAXONOMY, 2), table), prompt_len=5)
    prompt = torch.zeros(3, 5, dtype=torch.long)
    states = c.start(3)
    for step in range(20):
        ids = torch.cat([prompt, torch.tensor(rows)[:, :step]], dim=1)
        scores = torch.zeros(3, table.width)
        out = proc(ids, scores)
        assert torch.equal(torch.isinf(out), c.block(states))
        states = c.advance_all(states, [r[step] for r in rows])
