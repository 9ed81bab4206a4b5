"""Constrained decoding: the sampled answers keep the answer form by construction.

An :class:`~edge_inspector.judge.vlm.prompt.AnswerForm` lists the allowed *heads* of an answer (for the
judge: the decision, the defect type, the region, up to ``description:``; for a multiple-choice question:
the option letters) and says whether free text on one line may follow. :class:`FormConstraint` turns it
into a state machine over token ids: before each sampling step every token whose text would leave all
heads is masked out (its logit set to -inf), so that a row can only spell a head, then the free line,
then stop. Each row keeps its own state (the head text spelled so far); the allowed ids of a state are
computed once, from a table of every token's text, and cached.

The mask leaves the model's own choice among the allowed tokens (temperature and top-p act on the
renormalised rest), and P(defective) is read from the unmasked logits. :class:`AnswerLogitsProcessor`
is the same constraint as a transformers logits processor, for ``model.generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_inspector.judge.vlm.prompt import AnswerForm

_TAIL = "\x00tail"  # spelling the free line after a head
_END = "\x00end"  # only a stop token may follow
_FREE = "\x00free"  # unconstrained (a state with no allowed token: never expected, kept safe)


class TokenTable:
    """Every token id's text (None for special tokens and ids past the tokenizer), its ids by text,
    and the masks of the free line and of the end, for logits ``width`` wide."""

    def __init__(self, tokenizer, width: int, stop_ids: Sequence[int], device) -> None:
        import torch

        n = min(len(tokenizer), width)
        special = set(getattr(tokenizer, "added_tokens_decoder", {}) or {}) | set(tokenizer.all_special_ids)
        texts = tokenizer.batch_decode([[i] for i in range(n)], clean_up_tokenization_spaces=False)
        self.texts: list[str | None] = [None if i in special else t for i, t in enumerate(texts)]
        self.texts += [None] * (width - n)
        self.width, self.device = width, device
        self.stop_ids = tuple(stop_ids)
        self.by_text: dict[str, list[int]] = {}
        for i, t in enumerate(self.texts):
            if t:
                self.by_text.setdefault(t, []).append(i)
        # a token that ends the free line: a newline with nothing but white space after it
        self.line_end = frozenset(i for i, t in enumerate(self.texts) if t and "\n" in t
                                  and not t[t.index("\n"):].strip())
        tail_ok = [bool(t) and "\n" not in t for t in self.texts]
        for i in self.line_end:
            tail_ok[i] = True
        for i in self.stop_ids:
            tail_ok[i] = True
        self.tail_block = ~torch.tensor(tail_ok, dtype=torch.bool, device=device)
        self.end_block = torch.ones(width, dtype=torch.bool, device=device)
        self.end_block[list(self.stop_ids)] = False
        self.stops = frozenset(self.stop_ids)


class FormConstraint:
    """The answer form as a state machine over the token ids of one :class:`TokenTable`."""

    def __init__(self, form: AnswerForm, table: TokenTable) -> None:
        self.form, self.table = form, table
        self.heads = frozenset(form.heads)
        self._prefixes = frozenset(h[:j] for h in form.heads for j in range(len(h)))
        self._allowed: dict[str, object] = {}  # head prefix -> LongTensor of allowed ids

    def start(self, k: int) -> list[str]:
        return [""] * k

    def allowed(self, state: str):
        """The ids allowed after ``state`` (a head prefix): those whose text keeps it a head prefix."""
        ids = self._allowed.get(state)
        if ids is None:
            import torch

            rests = {h[len(state):] for h in self.form.heads if h.startswith(state)}
            pieces = {r[:j] for r in rests for j in range(1, len(r) + 1)}
            found = sorted({i for p in pieces for i in self.table.by_text.get(p, ())})
            ids = torch.tensor(found, dtype=torch.long, device=self.table.device)
            self._allowed[state] = ids
        return ids

    def advance(self, state: str, token: int) -> str:
        t = self.table
        if state in (_END, _FREE):
            return state
        if token in t.stops:
            return _END
        if state == _TAIL:
            return _END if token in t.line_end else _TAIL
        text = state + (t.texts[token] or "")
        if text in self.heads:
            return _TAIL if self.form.tail else _END
        return text if text in self._prefixes else _FREE

    def advance_all(self, states: list[str], tokens: Sequence[int]) -> list[str]:
        return [self.advance(s, int(tok)) for s, tok in zip(states, tokens, strict=True)]

    def block(self, states: Sequence[str]):
        """A (rows x width) bool mask, True where a token is not allowed."""
        import torch

        t = self.table
        mask = torch.ones((len(states), t.width), dtype=torch.bool, device=t.device)
        for r, s in enumerate(states):
            if s == _TAIL:
                mask[r] = t.tail_block
            elif s == _END:
                mask[r] = t.end_block
            elif s == _FREE:
                mask[r] = False
            else:
                ids = self.allowed(s)
                if len(ids):
                    mask[r, ids] = False
                else:
                    mask[r] = False
        return mask

    def apply(self, states: Sequence[str], logits):
        """``logits`` (rows x width) with every token the form does not allow at -inf (a new tensor)."""
        return logits.masked_fill(self.block(states), float("-inf"))

    def complete(self, state: str) -> bool:
        return state in (_TAIL, _END)


@dataclass(slots=True)
class AnswerLogitsProcessor:
    """The constraint as a transformers logits processor (``model.generate(logits_processor=[...])``):
    ``prompt_len`` tokens of each row are the prompt, the rest the answer so far."""

    constraint: FormConstraint
    prompt_len: int
    _states: list[str] | None = None
    _seen: int = 0

    def __call__(self, input_ids, scores):
        if self._states is None:
            self._states = self.constraint.start(input_ids.shape[0])
        answer = input_ids[:, self.prompt_len:]
        for col in range(self._seen, answer.shape[1]):
            self._states = self.constraint.advance_all(self._states, answer[:, col].tolist())
        self._seen = answer.shape[1]
        return self.constraint.apply(self._states, scores)
