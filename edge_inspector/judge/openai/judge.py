"""The remote judge (``judge.kind: openai``): the local VLM judge's cascade, prompt, votes, parser and
calibration, with the model behind an OpenAI-compatible server instead of in the daemon."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from edge_inspector.config_base import reveal_secret
from edge_inspector.errors import ConfigError, JudgeError
from edge_inspector.judge.openai.client import ChatClient, to_generation
from edge_inspector.judge.openai.config import OpenAIJudgeConfig
from edge_inspector.judge.openai.messages import ImageEncoder, request_body
from edge_inspector.judge.vlm.generation import DeadlineGuard, Generation
from edge_inspector.judge.vlm.judge import RecipeSource, VlmJudge, camera_recipe_sources
from edge_inspector.judge.vlm.prompt import Prompt

log = structlog.get_logger(__name__)


class RemoteEngine:
    """Runs a prompt on the server: one request, ``votes`` answers as its ``n`` choices."""

    def __init__(self, config: OpenAIJudgeConfig, client: ChatClient,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.client = client
        self.clock = clock
        self.images = ImageEncoder({"frame": config.frame_max_pixels, "crop": config.crop_max_pixels,
                                    "reference": config.reference_max_pixels})

    def run(self, prompt: Prompt, votes: int, guard: DeadlineGuard) -> Generation:
        c = self.config
        body = request_body(prompt, self.images.url, model=c.model, votes=votes, temperature=c.temperature,
                            top_p=c.top_p, max_tokens=c.max_tokens, top_logprobs=c.top_logprobs, seed=c.seed,
                            prefill_answer=c.prefill_answer, extra=c.extra_body)
        t0 = self.clock()
        obj = self.client.post(body, guard)
        gen = to_generation(obj, prompt.answer_prefix, votes, self.clock() - t0)
        if votes and len(gen.texts) != max(votes, 1):
            log.warning("judge_server_choices", asked=votes, got=len(gen.texts))
        return gen


class OpenAIJudge(VlmJudge):
    """The VLM judge with a :class:`RemoteEngine`. Every failure of the server or the network is a
    JudgeError (JudgeTimeout when the deadline passes), raised by the part's deadline at the latest."""

    _pool: ThreadPoolExecutor | None = None

    def judge_many(self, items):
        """Several waiting parts (a multi-camera station's) as concurrent requests, one per part,
        each by its own deadline: the server batches them into its forward passes (vLLM's
        continuous batching) instead of the station sending one after the other. The recipes are
        refreshed first, once, on this thread."""
        if len(items) <= 1:
            return super().judge_many(items)
        sources = [self.recipes_for(frame.camera) for frame, _ in items]
        for source in {id(s): s for s in sources}.values():
            source.refresh()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.config.pool_connections,
                                            thread_name_prefix="judge-request")
        futures = [self._pool.submit(self._judge, frame, regions, frame.deadline_mono, source)
                   for (frame, regions), source in zip(items, sources, strict=True)]
        out = []
        for future in futures:
            try:
                out.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - this part's failure, handed back
                out.append(exc)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.engine.client.close()


def build(config: OpenAIJudgeConfig, clock: Callable[[], float] = time.monotonic,
          camera_recipes: dict[str, Path] | None = None) -> OpenAIJudge:
    """The remote judge. Contacts no server: a station starts while the server is down, and its parts
    are NO-READs (judge error) until the server answers. ``camera_recipes``: each camera's recipe
    file, for a judge shared by a multi-camera station."""
    recipes = RecipeSource(config.recipe)
    by_camera = camera_recipe_sources(recipes, camera_recipes)
    try:
        key = reveal_secret(config.api_key) if config.api_key else None
    except ValueError as exc:
        raise ConfigError(f"judge.api_key: {exc}") from exc
    client = ChatClient(config.base_url, key, connect_timeout_s=config.connect_timeout_s,
                        retries=config.retries, retry_backoff_s=config.retry_backoff_ms / 1e3,
                        pool_connections=config.pool_connections, verify_tls=config.verify_tls,
                        ca_file=str(config.ca_file) if config.ca_file else None, clock=clock)
    judge = OpenAIJudge(config, RemoteEngine(config, client, clock), recipes,  # type: ignore[arg-type]
                        f"openai:{config.model}@{config.base_url}", clock, by_camera)
    log.info("openai_judge_ready", model=config.model, base_url=config.base_url, recipe=str(config.recipe),
             votes=config.votes)
    return judge


__all__ = ["JudgeError", "OpenAIJudge", "RemoteEngine", "build"]
