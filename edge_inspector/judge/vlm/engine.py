"""The inference engine: one prefill per part that k sampled answers share, a prefix key/value cache
for the fixed part of the prompt, P(defective) from the decision token's logits, deadline stops.

One call, :meth:`Engine.run`:

1. the prefix (instructions, recipe, references) is looked up by content hash; on a miss it is run
   through the model once and its key/value cache kept (one entry: recomputed when the recipe changes);
2. the part's suffix (frame, crops, question, ``defective:``) is prefilled once, batch 1, on a shallow
   fork of the prefix cache, with the 3-D rope positions of the whole sequence;
3. P(defective) is read from the last position's logits: P(yes) / (P(yes) + P(no));
4. the cache is expanded to k rows and k answers are sampled in lock-step (one forward per token for
   all k), so the votes cost one prefill plus k-wide decode steps instead of k full calls; with
   ``constrained`` each step masks the tokens that would leave the prompt's answer form
   (:mod:`~edge_inspector.judge.vlm.constrain`), so every vote keeps the form.

Every forward is preceded by a deadline check with its expected cost; a step that would end after the
deadline raises :class:`JudgeTimeout`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_inspector.errors import JudgeTimeout
from edge_inspector.judge.vlm.encode import Encoded, PromptEncoder, segments_key
from edge_inspector.judge.vlm.generation import CostModel, DeadlineGuard, Generation
from edge_inspector.judge.vlm.loading import LoadedModel
from edge_inspector.judge.vlm.prompt import AnswerForm, Prompt


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 48
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: every answer runs max_new_tokens


@dataclass(slots=True)
class _Prefix:
    key: str
    enc: Encoded
    cache: Any  # DynamicCache over the prefix tokens


class Engine:
    def __init__(self, loaded: LoadedModel, max_pixels: dict[str, int], sampling: SamplingSettings,
                 prefix_cache: bool = True, clock: Callable[[], float] = time.monotonic,
                 constrained: bool = True) -> None:
        import torch

        self.loaded = loaded
        self.model = loaded.model
        self.encoder = PromptEncoder(loaded.tokenizer, loaded.image_processor, loaded.model.config,
                                     max_pixels, loaded.device, loaded.dtype)
        self.sampling = sampling
        self.use_prefix_cache = prefix_cache
        self.constrained = constrained
        self._table = None  # TokenTable, built on the first constrained answer
        self._constraints: dict[AnswerForm, Any] = {}
        self.clock = clock
        self.costs = CostModel()
        self.prefill_tokens_total = 0  # every token run through a prefill, prefix included
        self._prefix: _Prefix | None = None
        self._lock = threading.Lock()
        self._gen = torch.Generator(device=loaded.device)
        if sampling.seed is not None:
            self._gen.manual_seed(sampling.seed)
        else:
            self._gen.seed()
        self._yes = torch.tensor(self.encoder.yes_ids, device=loaded.device)
        self._no = torch.tensor(self.encoder.no_ids, device=loaded.device)

    # -- the public call ---------------------------------------------------------------------------
    def run(self, prompt: Prompt, votes: int, guard: DeadlineGuard) -> Generation:
        """P(defective) and ``votes`` sampled answers for one part, by the guard's deadline."""
        wait = guard.remaining_s()
        if not self._lock.acquire(timeout=-1 if math.isinf(wait) else max(wait, 0.0)):
            raise JudgeTimeout("the model was still busy with an earlier part at the deadline")
        try:
            import torch

            with torch.inference_mode():
                return self._run(prompt, votes, guard)
        finally:
            self._lock.release()

    # -- steps --------------------------------------------------------------------------------------
    def _run(self, prompt: Prompt, votes: int, guard: DeadlineGuard) -> Generation:
        timings: dict[str, float] = {}
        t0 = self.clock()
        guard.check("encoding")
        hit = False
        if self.use_prefix_cache:
            prefix, hit = self._prefix_for(prompt, guard, timings)
            head, cache = prefix.enc, self._fork(prefix.cache)
            t1 = self.clock()
            tail = self.encoder.encode(prompt.suffix)
        else:
            head, cache, t1 = None, self._new_cache(), self.clock()
            tail = self.encoder.encode(prompt.prefix + prompt.suffix)
        timings["encode_ms"] = timings.get("encode_ms", 0.0) + (self.clock() - t1) * 1e3
        logits, next_pos = self._prefill(head, tail, cache, guard, timings, "prefill")
        p_yes, mass = self._decision_probability(logits)
        texts: tuple[str, ...] = ()
        if votes > 0:
            t2 = self.clock()
            answers = self._sample(cache, logits, next_pos, votes, guard, prompt.form, timings)
            texts = tuple(prompt.answer_prefix + t for t in answers)
            timings["decode_ms"] = (self.clock() - t2) * 1e3
        timings["total_ms"] = (self.clock() - t0) * 1e3
        return Generation(texts=texts, p_logit=p_yes, decision_mass=mass, prefill_tokens=len(tail.ids),
                          prefix_hit=hit, timings_ms=timings)

    def _prefix_for(self, prompt: Prompt, guard: DeadlineGuard, timings: dict) -> tuple[_Prefix, bool]:
        key = segments_key(prompt.prefix, self.encoder.max_pixels)
        if self._prefix is not None and self._prefix.key == key:
            return self._prefix, True
        t = self.clock()
        enc = self.encoder.encode(prompt.prefix)
        timings["encode_ms"] = (self.clock() - t) * 1e3
        cache = self._new_cache()
        self._prefill(None, enc, cache, guard, timings, "prefix")
        self._prefix = _Prefix(key, enc, cache)
        return self._prefix, False

    def _prefill(self, head: Encoded | None, tail: Encoded, cache, guard: DeadlineGuard, timings: dict,
                 what: str):
        """Run ``tail`` after the cached ``head``; returns the last logits and the next position."""
        import torch

        n = len(tail.ids)
        guard.check(what, self.costs.expect("prefill_token", n))
        ids = (head.ids if head else []) + tail.ids
        grids = [g for g in ((head.grids if head else None), tail.grids) if g is not None]
        positions = self._positions(ids, torch.cat(grids) if grids else None)
        t = self.clock()
        out = self.model(input_ids=torch.tensor([tail.ids], device=self.loaded.device),
                         pixel_values=tail.pixel_values, image_grid_thw=tail.grids,
                         position_ids=positions[:, :, len(ids) - n:], past_key_values=cache, use_cache=True,
                         logits_to_keep=1)
        logits = out.logits[:, -1, :].float()
        dt = self.clock() - t
        self.costs.observe("prefill_token", dt, n)
        self.prefill_tokens_total += n
        timings[f"{what}_ms"] = dt * 1e3
        return logits, int(positions.max()) + 1

    def _positions(self, ids: list[int], grids):
        """The 3-D rope positions (3 x 1 x len) of the whole sequence: text positions advance by one,
        an image's tokens take its (t, h, w) grid positions."""
        import torch

        t = torch.tensor([ids], device=self.loaded.device)
        if grids is None:
            return torch.arange(len(ids), device=t.device).view(1, 1, -1).expand(3, 1, -1)
        mm = (t == self.encoder.image_token).int()
        positions, _ = self.model.model.get_rope_index(t, mm_token_type_ids=mm, image_grid_thw=grids)
        return positions

    def _decision_probability(self, logits) -> tuple[float, float]:
        probs = logits[0].softmax(-1)
        p_yes, p_no = float(probs[self._yes].sum()), float(probs[self._no].sum())
        mass = p_yes + p_no
        return (p_yes / mass if mass > 0 else 0.5), mass

    def _constraint(self, form: AnswerForm, width: int):
        from edge_inspector.judge.vlm.constrain import FormConstraint, TokenTable

        if self._table is None or self._table.width != width:
            self._table = TokenTable(self.loaded.tokenizer, width, self.encoder.stop_ids, self.loaded.device)
            self._constraints.clear()
        c = self._constraints.get(form)
        if c is None:
            if len(self._constraints) >= 16:
                self._constraints.clear()
            c = self._constraints[form] = FormConstraint(form, self._table)
        return c

    def _sample(self, cache, logits, pos: int, k: int, guard: DeadlineGuard, form: AnswerForm | None,
                timings: dict) -> list[str]:
        import torch

        s = self.sampling
        t = time.perf_counter()  # the constraint's own cost (not the injected clock: the deadline's)
        constraint = self._constraint(form, logits.shape[-1]) if form is not None and self.constrained else None
        states = constraint.start(k) if constraint is not None else None
        spent = time.perf_counter() - t
        if k > 1:
            cache.batch_repeat_interleave(k)  # the shared prompt's keys/values, once per vote row
        logits = logits.expand(k, -1)
        stop = torch.tensor(self.encoder.stop_ids, device=logits.device)
        done = torch.zeros(k, dtype=torch.bool, device=logits.device)
        rows = []
        for step in range(s.max_new_tokens):
            if constraint is not None:
                t = time.perf_counter()
                logits = constraint.apply(states, logits)
                spent += time.perf_counter() - t
            nxt = _sample_tokens(logits, s.temperature, s.top_p, self._gen)
            nxt = torch.where(done, stop[0], nxt)
            rows.append(nxt)
            if constraint is not None:
                t = time.perf_counter()
                states = constraint.advance_all(states, nxt.tolist())
                spent += time.perf_counter() - t
            if not s.ignore_eos:
                done |= torch.isin(nxt, stop)
            if step == s.max_new_tokens - 1 or bool(done.all()):
                break
            guard.check("generation", self.costs.expect("decode_step"))
            t = self.clock()
            out = self.model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True,
                             position_ids=torch.full((3, k, 1), pos + step, device=logits.device))
            logits = out.logits[:, -1, :].float()
            self.costs.observe("decode_step", self.clock() - t)
        if constraint is not None:
            timings["constrain_ms"] = spent * 1e3
        tokens = torch.stack(rows, dim=1).tolist()
        return self.encoder.decode(tokens)

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _fork(self, cache):
        """A new cache that starts from ``cache``'s tensors (copied once on the first append; the
        prefix cache itself is never written to)."""
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=[(k, v) for k, v, *_ in cache])


def _sample_tokens(logits, temperature: float, top_p: float, generator):
    """One token per row: temperature, then nucleus (top-p) filtering, then a multinomial draw."""
    import torch

    probs = (logits / temperature).softmax(-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest prefix whose mass reaches top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
