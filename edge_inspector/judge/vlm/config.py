"""The VLM judge's configuration (``judge.kind: vlm``). Importing this module imports no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge_inspector.config_base import PROJECT_DIR, ConfigModel, ConfigPath


class CascadeConfig(ConfigModel):
    enabled: bool = Field(True, title="Cascade", description=(
        "Pass a part without calling the VLM when the regions stage's anomaly score is below the "
        "calibrated pass threshold (the recipe's calibration, or pass_below)."))
    pass_below: float | None = Field(None, title="Pass below", description=(
        "Anomaly score under which a part passes without the VLM. Overrides the recipe's calibrated "
        "value; with neither, every part goes to the VLM."))
    p_defective: float = Field(0.01, ge=0.0, le=1.0, title="P(defective) of a cascade pass", description=(
        "The P(defective) recorded for a part the cascade passed, when the recipe's calibration has no "
        "measured value."))


class PromptImages(ConfigModel):
    """How much of each image the model is shown: the same for a local and a served model."""

    frame_max_pixels: int = Field(1024 * 1024, ge=3136, description=(
        "The frame is resized (aspect kept) to at most this many pixels before the model sees it."))
    crop_max_pixels: int = Field(448 * 448, ge=3136, description="Likewise for each zoomed region crop.")
    reference_max_pixels: int = Field(1024 * 1024, ge=3136, description="Likewise for reference images.")
    max_regions: int = Field(4, ge=0, le=16, description="Most region crops shown to the model per part.")


class VlmJudgeConfig(PromptImages):
    kind: Literal["vlm"] = Field("vlm", description="Selects the VLM judge (Qwen2.5-VL / Qwen3-VL).")
    model_dir: ConfigPath | None = Field(None, title="Model directory", description=(
        "A local Qwen2.5-VL or Qwen3-VL checkpoint directory (full precision or AWQ 4-bit). Nothing is "
        "fetched from a hub. Give this or model_version."))
    model_version: str | None = Field(None, min_length=1, title="Model version", description=(
        "A version of the model registry (models.dir; `edge-inspector model list`), or `current`: "
        "the version promoted last, so that `model promote` and `model rollback` switch what the "
        "station serves (at its reload). Resolved when the config is loaded; instead of model_dir."))
    recipe: ConfigPath = Field(PROJECT_DIR / "configs/recipes/pcb.yaml", description=(
        "The product recipe (YAML): part description, defect taxonomy, rules, reference images, "
        "calibration. Default: the bare-PCB recipe shipped with edge-inspector (configs/recipes/pcb.yaml "
        "beside the package), whatever the current directory or the config file's folder."))
    votes: int = Field(5, ge=0, le=16, description=(
        "Sampled answers per part (self-consistency), generated in one batch that shares the prompt's "
        "prefill. 0: no sampling, the verdict rests on P(defective) from the logits alone."))
    temperature: float = Field(0.7, gt=0.0, le=2.0, description="Sampling temperature of the votes.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass of the votes.")
    max_new_tokens: int = Field(48, ge=4, le=512, description="Most tokens per answer.")
    constrained: bool = Field(True, description=(
        "Constrained decoding: each sampled answer is masked, token by token, to the answer form (a "
        "yes/no decision, one of the recipe's defect types, a region number in range, a one-line "
        "description), so that no vote is invalid for its form. The parser still reads every answer."))
    seed: int | None = Field(None, description="Sampling seed (reproducible votes); None: random.")
    min_valid_fraction: float = Field(0.5, ge=0.0, le=1.0, description=(
        "Fewer parseable answers than this fraction of the votes is a judge error (fail-safe), never "
        "a pass."))
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description=(
        "Where the model runs. auto: the GPU when there is one."))
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description=(
        "Activation dtype. auto: bfloat16 (float16 where unsupported) on a GPU, float32 on a CPU; AWQ "
        "checkpoints need bfloat16 or float16."))
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="The attention kernel transformers uses.")
    prefix_cache: bool = Field(True, description=(
        "Compute the fixed part of the prompt (instructions, recipe, reference images) once and reuse "
        "its key/value cache for every part; recomputed when the recipe changes."))
    deadline_margin_ms: float = Field(5.0, ge=0.0, description=(
        "Generation stops (timeout) when the next step is expected to end less than this before the "
        "part's deadline."))
    cascade: CascadeConfig = Field(default_factory=CascadeConfig, description="The regions-score cascade.")

    @model_validator(mode="after")
    def _one_model(self) -> VlmJudgeConfig:
        # both set: a resolved model_version (config._with_model_version checks the file gave one)
        if self.model_dir is None and self.model_version is None:
            raise ValueError("give judge.model_dir (a checkpoint directory) or judge.model_version (a "
                             "version of models.dir, or current)")
        return self
