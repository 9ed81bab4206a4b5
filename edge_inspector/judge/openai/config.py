"""The remote judge's configuration (``judge.kind: openai``): a VLM served over an OpenAI-compatible
API (vLLM, SGLang, llama.cpp's llama-server) for several stations. Importing this module imports no
torch and no HTTP client."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from edge_inspector.config_base import PROJECT_DIR, ConfigPath, SecretRef
from edge_inspector.judge.vlm.config import CascadeConfig, PromptImages


class OpenAIJudgeConfig(PromptImages):
    kind: Literal["openai"] = Field("openai", description=(
        "Selects the remote judge: the VLM answers from an OpenAI-compatible server "
        "(/v1/chat/completions), with the same prompt, parser and votes as the local VLM judge."))
    base_url: str = Field(..., min_length=1, description=(
        "The server's base URL, up to and including /v1 (e.g. http://judge-server:8000/v1)."))
    model: str = Field(..., min_length=1, description=(
        "The model name the server serves (vLLM: --served-model-name, or the path it was started with)."))
    api_key: SecretRef | None = Field(None, description=(
        "The server's API key (sent as a Bearer token): env:NAME or file:PATH. None: no key."))
    recipe: ConfigPath = Field(PROJECT_DIR / "configs/recipes/pcb.yaml", description=(
        "The product recipe (YAML): part description, defect taxonomy, rules, reference images, "
        "calibration. The recipe's calibration must have been fitted on this served model."))
    votes: int = Field(5, ge=0, le=16, description=(
        "Sampled answers per part (self-consistency), asked as n samples of one request so that the "
        "server prefills the prompt once. 0: one decision token only; the verdict rests on "
        "P(defective) from its log-probabilities."))
    temperature: float = Field(0.7, gt=0.0, le=2.0, description="Sampling temperature of the votes.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass of the votes.")
    max_tokens: int = Field(48, ge=4, le=512, description="Most tokens per answer.")
    top_logprobs: int = Field(10, ge=2, le=20, description=(
        "Alternatives returned for the decision token; P(defective) is the yes mass over yes + no "
        "among them."))
    seed: int | None = Field(None, description="Sampling seed sent to the server; None: random.")
    min_valid_fraction: float = Field(0.5, ge=0.0, le=1.0, description=(
        "Fewer parseable answers than this fraction of the votes is a judge error (fail-safe), never "
        "a pass."))
    prefill_answer: bool = Field(True, description=(
        "Send the answer's start (defective:) as a final assistant message that the model continues "
        "(vLLM: continue_final_message; llama-server does it by default), so that the first token is "
        "the decision. Off for servers that reject a final assistant message."))
    extra_body: dict[str, Any] = Field(default_factory=dict, description=(
        "Extra fields merged into every request (server-specific: vLLM's guided_regex or top_k, "
        "llama.cpp's grammar)."))
    connect_timeout_s: float = Field(0.5, gt=0.0, le=30.0, description=(
        "Longest wait for the TCP (and TLS) connection to the server, within the part's deadline."))
    retries: int = Field(1, ge=0, le=5, description=(
        "Attempts after the first when the connection fails or the server answers 502/503/504, each "
        "only while the part's deadline leaves time for it."))
    retry_backoff_ms: float = Field(50.0, ge=0.0, le=5000.0, description="Wait before each retry.")
    pool_connections: int = Field(4, ge=1, le=64, description=(
        "Keep-alive connections kept open to the server (one HTTP connection pool per judge)."))
    verify_tls: bool = Field(True, description="Check the server's certificate for https URLs.")
    ca_file: ConfigPath | None = Field(None, description=(
        "CA certificate(s) (PEM) that sign the server's certificate. None: the system's CA store."))
    deadline_margin_ms: float = Field(5.0, ge=0.0, description=(
        "The request's timeout is the time left before the part's deadline less this margin."))
    cascade: CascadeConfig = Field(default_factory=CascadeConfig, description="The regions-score cascade.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @property
    def constrained(self) -> bool:
        """The server's answers are not masked to the answer form (the parser reads them all)."""
        return False
