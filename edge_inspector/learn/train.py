"""LoRA fine-tuning of the judge's Qwen-VL model on an exported dataset, resumable.

The base checkpoint is loaded by the judge's own loader (:func:`~edge_inspector.judge.vlm.loading.
load_model`), the conversations are encoded by the judge's prompt encoder through the checkpoint's chat
template (:mod:`.encode`), and ``peft`` puts LoRA adapters on the language model's Linear layers (the
vision tower and its merger stay frozen unless ``vision`` is set). The loss is the mean cross-entropy
over the assistant's answer tokens.

A run directory::

    RUN_DIR/run.json          base, dataset, dataset_hash, lora, settings, steps, loss per step, val_loss, finished
    RUN_DIR/checkpoints/step-NNNNNN/   adapter + optimizer + RNG state (the last two kept)
    RUN_DIR/adapter/          the final adapter (peft ``save_pretrained``)

Batches are drawn from a seeded permutation per epoch, a function of (seed, step) only, and a
checkpoint holds everything that changes between steps (adapter, optimizer, RNG), so a resumed run
gives the losses an uninterrupted one gives. Ctrl-C writes a checkpoint at the last finished step.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from edge_inspector.errors import EdgeInspectorError, StartupError
from edge_inspector.learn.dataset import Dataset, load_dataset
from edge_inspector.learn.encode import ROLE as ROLE_ANY

log = structlog.get_logger("edge_inspector.learn.train")

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
STATE = "state.pt"
KEEP_CHECKPOINTS = 2


class RunError(EdgeInspectorError):
    """A run directory that cannot be started, resumed or merged as asked."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class LoraSettings:
    rank: int = 16
    alpha: float | None = None  # None: 2 x rank
    dropout: float = 0.0
    vision: bool = False  # adapters on the vision tower too

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha if self.alpha is not None else 2.0 * self.rank,
                "dropout": self.dropout, "vision": self.vision}


@dataclass(frozen=True, slots=True)
class TrainSettings:
    steps: int = 200
    lr: float = 2e-4
    batch: int = 1
    seed: int = 0
    save_every: int = 50
    max_pixels: int = 1024 * 1024  # the largest image the model is shown (the judge's frame limit)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        for name, ok in (("steps", self.steps >= 1), ("lr", self.lr > 0), ("batch", self.batch >= 1),
                         ("save_every", self.save_every >= 1), ("rank", self.lora.rank >= 1),
                         ("max_pixels", self.max_pixels >= 3136),
                         ("dropout", 0.0 <= self.lora.dropout < 1.0)):
            if not ok:
                raise RunError(f"train: {name} is out of range")

    def recorded(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues (steps may grow)."""
        d = asdict(self)
        d.pop("steps")
        d.pop("save_every")
        d["lora"] = self.lora.as_dict()
        return d


@dataclass(slots=True)
class RunResult:
    run_dir: Path
    loss: list[float]
    val_loss: float | None
    val_loss_before: float | None
    finished: bool
    seconds: float
    record: dict[str, Any]
    model: Any = None  # the trained peft model (base weights frozen, adapters trained)


# -- the run directory ---------------------------------------------------------------------------------

def read_run(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunError(f"{run_dir}: no {RUN_FILE} (not a training run directory)") from exc
    except (OSError, ValueError) as exc:
        raise RunError(f"{run_dir}/{RUN_FILE}: unreadable ({exc})") from exc


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if re.fullmatch(r"step-\d{6,}", p.name) and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def batch_indices(step: int, batch: int, n: int, seed: int) -> list[int]:
    """The examples of ``step`` (0-based): a seeded permutation per epoch, read in order."""
    import numpy as np

    out = []
    for k in range(step * batch, (step + 1) * batch):
        epoch, i = divmod(k, n)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n)[i]))
    return out


# -- the model -----------------------------------------------------------------------------------------

def lora_targets(model, vision: bool) -> list[str]:
    """The full names of the Linear layers that get adapters: every Linear of the language model's
    decoder, and of the vision tower (blocks and merger) when ``vision``. Never the output head."""
    import torch

    scopes = [n for n, _ in model.named_modules() if n.endswith("language_model")][:1]
    if vision:
        scopes += [n for n, _ in model.named_modules() if n.endswith("visual")][:1]
    if not scopes or (vision and len(scopes) < 2):
        raise StartupError("train: cannot find the language model (and vision tower) in this checkpoint")
    return [n for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and any(n.startswith(s + ".") for s in scopes)]


def describe_targets(names: list[str]) -> dict[str, Any]:
    """A short account of the adapted layers for run.json: how many, of which kinds, where."""
    return {"count": len(names), "kinds": sorted({n.rsplit(".", 1)[-1] for n in names}),
            "language_model": sum("language_model" in n for n in names),
            "vision": sum("visual" in n for n in names)}


def build_peft(model, lora: LoraSettings):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=lora.rank, lora_alpha=lora.as_dict()["alpha"], lora_dropout=lora.dropout,
                     target_modules=lora_targets(model, lora.vision), bias="none")
    return get_peft_model(model, cfg)


def load_base(base: Path, device: str, dtype: str):
    """The base checkpoint through the judge's loader, and its processor (the chat template)."""
    from transformers import AutoProcessor

    from edge_inspector.judge.vlm.loading import load_model

    loaded = load_model(base, device=device, dtype=dtype)
    if loaded.info.awq:
        raise StartupError(f"train: {base} is an AWQ checkpoint; fine-tune the full-precision model and "
                           "quantize the merged result (tools/quantize_awq.py)")
    processor = AutoProcessor.from_pretrained(base, local_files_only=True)
    return loaded, processor


def role_limits(max_pixels: int, prompt_images: dict[str, Any] | None) -> dict[str, int]:
    """The pixel limit of each image role: the judge's own (the dataset manifest's ``prompt_images``,
    what the export's station showed its model), each capped by ``max_pixels``; ``max_pixels`` for an
    image that names no role. Training sees each image at the size the judge shows it."""
    limits = {ROLE_ANY: max_pixels}
    for role in ("frame", "crop", "reference"):
        v = (prompt_images or {}).get(f"{role}_max_pixels")
        limits[role] = min(int(v), max_pixels) if isinstance(v, int) and v >= 3136 else max_pixels
    return limits


def make_encoder(loaded, processor, max_pixels: int, prompt_images: dict[str, Any] | None = None):
    from edge_inspector.judge.vlm.encode import PromptEncoder
    from edge_inspector.learn.encode import ConversationEncoder

    import torch

    enc = PromptEncoder(loaded.tokenizer, loaded.image_processor, loaded.model.config,
                        role_limits(max_pixels, prompt_images),
                        torch.device("cpu"), loaded.dtype)
    return ConversationEncoder(processor, enc)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def mean_loss(model, encoder, examples, device, batch: int = 1) -> float | None:
    """Token-weighted mean answer loss over ``examples`` (no gradient)."""
    import torch

    from edge_inspector.learn.encode import collate

    if not examples:
        return None
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    pad = encoder.encoder.tok.pad_token_id or 0
    with torch.no_grad():
        for i in range(0, len(examples), batch):
            enc = [encoder.encode(e) for e in examples[i:i + batch]]
            n = sum(e.answer_tokens for e in enc)
            out = model(**_to(collate(enc, pad, encoder.encoder.image_token), device))
            total += out.loss.item() * n
            count += n
    model.train(was_training)
    return total / count


# -- the loop ------------------------------------------------------------------------------------------

def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)


def _rng_state() -> dict:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, model, optimizer, step: int, loss: list[float]) -> Path:
    """Adapter, optimizer, RNG and losses after ``step`` steps; written aside, then renamed."""
    import torch

    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"step": step, "loss": loss, "optimizer": optimizer.state_dict(), "rng": _rng_state()}, tmp / STATE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model, optimizer) -> tuple[int, list[float]]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(path / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    if getattr(result, "unexpected_keys", None):
        raise RunError(f"{path}: the checkpoint's adapter does not fit this model "
                       f"({len(result.unexpected_keys)} unexpected tensors)")
    state = torch.load(path / STATE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"])
    return int(state["step"]), [float(x) for x in state["loss"]]


def _record(base: Path, data: Dataset, settings: TrainSettings, loss: list[float], finished: bool,
            val_loss: float | None, val_loss_before: float | None, extra: dict) -> dict:
    return {
        "base": str(base), "dataset": str(data.path), "dataset_hash": data.dataset_hash,
        "lora": settings.lora.as_dict() | {"target_modules": extra.get("target_modules"),
                                           "trainable_params": extra.get("trainable_params")},
        "settings": settings.recorded(), "target_steps": settings.steps, "steps": len(loss), "loss": loss,
        "val_loss_before": val_loss_before, "val_loss": val_loss, "train_examples": len(data.train),
        "val_examples": len(data.val), "finished": finished,
        "adapter": ADAPTER if finished else None,
    }


def _check_resume(run_dir: Path, prev: dict, base: Path, data: Dataset, settings: TrainSettings) -> None:
    for key, now in (("base", str(base)), ("dataset_hash", data.dataset_hash)):
        if prev.get(key) != now:
            raise RunError(f"{run_dir}: cannot resume: the run's {key} is {prev.get(key)!r}, now {now!r}")
    if prev.get("settings") != json.loads(json.dumps(settings.recorded())):
        raise RunError(f"{run_dir}: cannot resume with other settings than the run's "
                       f"({prev.get('settings')}); only --steps may change")


def train(dataset: Path, base: Path, run_dir: Path, settings: TrainSettings, resume: bool = False,
          device: str = "auto", dtype: str = "auto", progress: bool = True,
          on_step: Callable[[int, float], None] | None = None) -> RunResult:
    """Fine-tune ``base`` on ``dataset`` into ``run_dir``. ``on_step(step, loss)`` is called after each
    step (1-based step numbers)."""
    t0 = time.monotonic()
    run_dir = Path(run_dir)
    data = load_dataset(dataset)
    base = Path(base).resolve()
    prev = None
    if resume:
        prev = read_run(run_dir)
        _check_resume(run_dir, prev, base, data, settings)
    elif (run_dir / RUN_FILE).exists() or checkpoints(run_dir):
        raise RunError(f"{run_dir} already holds a run: --resume to continue it, or another --out")
    import torch  # after the cheap checks: a wrong option fails in a moment

    from edge_inspector.learn.encode import collate

    loaded, processor = load_base(base, device, dtype)
    dev = loaded.device
    torch.manual_seed(settings.seed)
    model = build_peft(loaded.model, settings.lora)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    adapted = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})]
    extra = {"target_modules": describe_targets(adapted),
             "trainable_params": sum(p.numel() for p in trainable)}
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    encoder = make_encoder(loaded, processor, settings.max_pixels, data.manifest.get("prompt_images"))
    pad = loaded.tokenizer.pad_token_id or 0

    start, loss = 0, []
    val_before = prev.get("val_loss_before") if prev else None
    if resume:
        found = checkpoints(run_dir)
        if not found:
            raise RunError(f"{run_dir}: nothing to resume (no checkpoint under {CHECKPOINTS}/)")
        start, loss = load_checkpoint(found[-1], model, optimizer)
        log.info("train_resumed", run=str(run_dir), checkpoint=found[-1].name, step=start)
        if start >= settings.steps:
            raise RunError(f"{run_dir}: the last checkpoint is at step {start}; --steps {settings.steps} "
                           "leaves nothing to do (give more --steps)")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        val_before = mean_loss(model, encoder, data.val, dev, settings.batch)
    _write_json(run_dir / RUN_FILE, _record(base, data, settings, loss, False, None, val_before, extra))
    log.info("train_start", run=str(run_dir), base=str(base), dataset=str(data.path),
             examples=len(data.train), steps=settings.steps, start=start, device=str(dev),
             trainable_params=extra["trainable_params"])

    model.train()
    step = start
    bar = _progress() if progress else None
    task = bar.add_task("train", total=settings.steps, completed=start, loss="-") if bar else None
    try:
        if bar:
            bar.start()
        while step < settings.steps:
            ts = time.monotonic()
            idx = batch_indices(step, settings.batch, len(data.train), settings.seed)
            batch = collate([encoder.encode(data.train[i]) for i in idx], pad, encoder.encoder.image_token)
            out = model(**_to(batch, dev))
            value = out.loss.detach().item()
            if not math.isfinite(value):
                raise RunError(f"train: the loss is not finite at step {step + 1} ({value}); lower --lr")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
            optimizer.step()
            step += 1
            loss.append(value)
            log.info("train_step", step=step, loss=round(value, 6), seconds=round(time.monotonic() - ts, 3))
            if bar:
                bar.update(task, completed=step, loss=f"{value:.4f}")
            if step % settings.save_every == 0 and step < settings.steps:
                save_checkpoint(run_dir, model, optimizer, step, loss)
                _write_json(run_dir / RUN_FILE, _record(base, data, settings, loss, False, None, val_before, extra))
            if on_step:
                on_step(step, value)
    except KeyboardInterrupt:
        if bar:
            bar.stop()
        if step > start:
            saved = save_checkpoint(run_dir, model, optimizer, step, loss)
            log.warning("train_interrupted", step=step, checkpoint=str(saved))
        _write_json(run_dir / RUN_FILE, _record(base, data, settings, loss, False, None, val_before, extra))
        raise
    if bar:
        bar.stop()
    save_checkpoint(run_dir, model, optimizer, step, loss)
    val = mean_loss(model, encoder, data.val, dev, settings.batch)
    adapter = run_dir / ADAPTER
    shutil.rmtree(adapter, ignore_errors=True)
    model.save_pretrained(adapter)
    record = _record(base, data, settings, loss, True, val, val_before, extra)
    _write_json(run_dir / RUN_FILE, record)
    seconds = time.monotonic() - t0
    log.info("train_done", run=str(run_dir), steps=step, first_loss=loss[0] if loss else None,
             last_loss=loss[-1] if loss else None, val_loss=val, val_loss_before=val_before,
             seconds=round(seconds, 1))
    return RunResult(run_dir, loss, val, val_before, True, seconds, record, model)
