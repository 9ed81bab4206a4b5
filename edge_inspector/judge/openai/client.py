"""The HTTP side of the remote judge: one connection pool per judge, each request bounded by the
part's deadline, retries only while the deadline allows, and the server's answer read into the
:class:`~edge_inspector.judge.vlm.generation.Generation` the local engine returns.

Failures are judge errors that say what happened (the policy makes the part a NO-READ with it):
:class:`JudgeTimeout` when the deadline passes first, :class:`JudgeError` for a server that is down,
refuses the request or answers something that is not a chat completion.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from edge_inspector.errors import JudgeError, JudgeTimeout
from edge_inspector.judge.vlm.generation import DeadlineGuard, Generation
from edge_inspector.judge.vlm.prompt import NO_WORDS, YES_WORDS

log = structlog.get_logger(__name__)

_RETRY_STATUS = {502, 503, 504}
_YES = {w.lower() for w in YES_WORDS}
_NO = {w.lower() for w in NO_WORDS}


class ChatClient:
    """POSTs chat completion requests to ``base_url`` + /chat/completions over a keep-alive pool."""

    def __init__(self, base_url: str, api_key: str | None = None, *, connect_timeout_s: float = 0.5,
                 retries: int = 1, retry_backoff_s: float = 0.05, pool_connections: int = 4,
                 verify_tls: bool = True, ca_file: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.clock = clock
        tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED" if verify_tls else "CERT_NONE"}
        if ca_file:
            tls["ca_certs"] = ca_file
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=pool_connections, block=False, retries=False,
                                        **tls)

    def post(self, body: dict[str, Any], guard: DeadlineGuard) -> dict[str, Any]:
        """One chat completion, answered before the guard's deadline or JudgeTimeout/JudgeError."""
        payload = json.dumps(body).encode()
        attempt = 0
        while True:
            guard.check("the remote judge's request")
            left = guard.remaining_s()
            timeout = urllib3.Timeout(total=left, connect=min(self.connect_timeout_s, left), read=left)
            try:
                resp = self.pool.request("POST", self.url, body=payload, headers=self.headers, timeout=timeout,
                                         retries=False, redirect=False, preload_content=True)
            except NewConnectionError as exc:  # refused, no route (a subclass of the connect timeout)
                error = f"the judge server at {self.url} is unreachable: {exc}"
            except (ReadTimeoutError, Urllib3Timeout) as exc:
                if isinstance(exc, ReadTimeoutError) or guard.remaining_s() <= 0:
                    raise JudgeTimeout(f"the judge server at {self.url} did not answer before the part's "
                                       f"deadline ({left * 1e3:.0f} ms)") from exc
                error = f"connection to the judge server at {self.url} timed out"
            except HTTPError as exc:
                error = f"the judge server at {self.url} is unreachable: {type(exc).__name__}: {exc}"
            else:
                if resp.status == 200:
                    return _json(resp.data, self.url)
                error = f"the judge server at {self.url} answered HTTP {resp.status}: {_reason(resp.data)}"
                if resp.status not in _RETRY_STATUS:
                    raise JudgeError(error)
            if attempt >= self.retries or guard.remaining_s() <= self.retry_backoff_s:
                raise JudgeError(error)
            attempt += 1
            log.warning("judge_server_retry", attempt=attempt, error=error)
            time.sleep(self.retry_backoff_s)

    def close(self) -> None:
        self.pool.clear()


def _json(data: bytes, url: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JudgeError(f"the judge server at {url} answered something that is not JSON: {data[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise JudgeError(f"the judge server at {url} answered JSON that is not an object: {data[:80]!r}")
    return obj


def _reason(data: bytes) -> str:
    try:
        err = json.loads(data).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:200]
    except (ValueError, AttributeError):
        pass
    return data[:200].decode("utf-8", "replace")


def decision_probability(top: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """(P(yes) / (P(yes) + P(no)), P(yes) + P(no)) from one token's top log-probabilities; (0.5, 0.0)
    when neither is among them."""
    yes = no = 0.0
    for alt in top:
        if not isinstance(alt, dict):
            continue
        word, lp = str(alt.get("token", "")).strip().lower(), alt.get("logprob")
        if not isinstance(lp, int | float) or not math.isfinite(lp):
            continue
        if word in _YES:
            yes += math.exp(lp)
        elif word in _NO:
            no += math.exp(lp)
    mass = yes + no
    return (yes / mass if mass > 0 else 0.5), min(mass, 1.0)


def _decision_top(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """The top log-probabilities of the first generated token that is not blank."""
    content = (choice.get("logprobs") or {}).get("content") or []
    for tok in content:
        if isinstance(tok, dict) and str(tok.get("token", "")).strip():
            return list(tok.get("top_logprobs") or [tok])
    return []


def to_generation(obj: dict[str, Any], answer_prefix: str, votes: int, elapsed_s: float) -> Generation:
    """The server's chat completion as the engine's Generation. The texts start with the pre-filled
    answer start (the parser expects it), put back where the server left it out. Raises JudgeError when it is not a chat completion."""
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise JudgeError(f"the judge server's answer has no choices: {json.dumps(obj)[:120]}")
    texts = []
    for c in choices:
        content = (c.get("message") or {}).get("content") if isinstance(c.get("message"), dict) else None
        if not isinstance(content, str):
            texts.append("")  # no text: an invalid vote
        elif content.lstrip().startswith(answer_prefix):
            texts.append(content)  # llama-server returns the continued message whole, vLLM only what follows
        else:
            texts.append(answer_prefix + content)
    p, mass = decision_probability(_decision_top(choices[0]))
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    cached = details.get("cached_tokens") or (obj.get("timings") or {}).get("cache_n") or 0
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    return Generation(texts=tuple(texts) if votes else (), p_logit=p, decision_mass=mass,
                      prefill_tokens=max(prompt_tokens - int(cached), 0), prefix_hit=bool(cached),
                      timings_ms={"total_ms": elapsed_s * 1e3})
