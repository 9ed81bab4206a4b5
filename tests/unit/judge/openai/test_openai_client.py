"""Reading the server's answers (garbage is a judge error or an invalid vote, never a pass), and a
server that is down (a real closed port: the fail-safe reason at once)."""

from __future__ import annotations

import math
import socket
import time

import pytest

from edge_inspector.errors import JudgeError, JudgeTimeout
from edge_inspector.judge.openai.client import ChatClient, decision_probability, to_generation
from edge_inspector.judge.vlm.generation import DeadlineGuard
from edge_inspector.judge.vlm.parse import parse_answer


def _choice(content, top=None):
    c = {"index": 0, "message": {"role": "assistant", "content": content}}
    if top is not None:
        c["logprobs"] = {"content": [{"token": top[0]["token"], "logprob": top[0]["logprob"], "top_logprobs": top}]}
    return c


def test_decision_probability_is_yes_over_yes_and_no():
    p, mass = decision_probability([{"token": " yes", "logprob": math.log(0.6)},
                                    {"token": " No", "logprob": math.log(0.2)},
                                    {"token": "maybe", "logprob": math.log(0.1)}])
    assert p == pytest.approx(0.75) and mass == pytest.approx(0.8)
    assert decision_probability([{"token": "x", "logprob": -0.1}]) == (0.5, 0.0)
    assert decision_probability([{"token": "yes", "logprob": "NaN"}, "junk"]) == (0.5, 0.0)


def test_choices_become_votes_with_the_answer_start_put_back():
    top = [{"token": " no", "logprob": math.log(0.9)}, {"token": " yes", "logprob": math.log(0.1)}]
    obj = {"choices": [_choice(" no\ndefect_type: none\nregion: none\ndescription: fine", top),
                       _choice(" yes\ndefect_type: short\nregion: 1\ndescription: x")],
           "usage": {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 80}}}
    gen = to_generation(obj, "defective:", votes=2, elapsed_s=0.01)
    assert gen.texts[0].startswith("defective: no") and len(gen.texts) == 2
    assert gen.p_logit == pytest.approx(0.1) and gen.prefix_hit and gen.prefill_tokens == 20
    whole = to_generation({"choices": [_choice("defective: no")]}, "defective:", votes=1, elapsed_s=0.0)
    assert whole.texts == ("defective: no",)  # a server that returns the continued message whole


@pytest.mark.parametrize("obj", [{}, {"choices": []}, {"choices": "no"}, {"choices": [1, 2]},
                                 {"error": {"message": "boom"}}])
def test_an_answer_that_is_no_chat_completion_is_a_judge_error(obj):
    with pytest.raises(JudgeError, match="no choices"):
        to_generation(obj, "defective:", votes=3, elapsed_s=0.0)


def test_garbage_content_is_an_invalid_vote_never_a_pass():
    obj = {"choices": [_choice(None), _choice(" maybe?"), {"message": "x"}, _choice(" I cannot help")]}
    gen = to_generation(obj, "defective:", votes=4, elapsed_s=0.0)
    votes = [parse_answer(t, ["short"], 1) for t in gen.texts]
    assert len(votes) == 4 and all(v.defective is None for v in votes)
    assert gen.decision_mass == 0.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_is_a_judge_error_at_once():
    client = ChatClient(f"http://127.0.0.1:{_closed_port()}/v1", retries=2, retry_backoff_s=0.01)
    t0 = time.monotonic()
    with pytest.raises(JudgeError, match="unreachable") as info:
        client.post({"model": "m"}, DeadlineGuard(time.monotonic() + 30.0))
    assert not isinstance(info.value, JudgeTimeout)
    assert time.monotonic() - t0 < 10.0  # three refused connections, far from the 30 s deadline


def test_no_request_is_sent_once_the_deadline_has_passed():
    client = ChatClient(f"http://127.0.0.1:{_closed_port()}/v1")
    with pytest.raises(JudgeTimeout):
        client.post({"model": "m"}, DeadlineGuard(time.monotonic() - 1.0))
