"""Loading a Qwen-VL checkpoint from a local directory, once, at start-up.

:func:`inspect_checkpoint` checks the directory without torch (config, architecture, safetensors
headers and sizes, AWQ layout) so that a broken model is a clear :class:`StartupError` naming the
directory and what is wrong, before seconds are spent importing transformers. :func:`load_model` then
loads it through transformers' image-text-to-text auto class, the tokenizer and an image-only
processor, with ``local_files_only`` (nothing is fetched from a hub). AWQ checkpoints load through
transformers' AWQ integration (gptqmodel), with the vision tower forced into the skip list: published
Qwen2.5-VL AWQ configs name it ``visual``, which transformers 5 no longer matches (``model.visual``),
and a quantized-but-unmatched tower would load as garbage.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_inspector.errors import StartupError

SUPPORTED = ("qwen2_5_vl", "qwen3_vl")
VISION_SKIP = ("model.visual", "visual")
_QUANT_SUFFIXES = (".qweight", ".qzeros", ".scales", ".g_idx")


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    path: Path
    config: dict[str, Any]
    family: str  # model_type: qwen2_5_vl | qwen3_vl
    awq: bool
    weight_files: tuple[Path, ...]
    tensor_names: frozenset[str]
    fingerprint: str


def _fail(path: Path, what: str) -> StartupError:
    return StartupError(f"VLM model directory {path}: {what}")


def _safetensors_names(path: Path, file: Path) -> list[str]:
    """Tensor names from a safetensors header; checks the header and that the file is complete."""
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise _fail(path, f"corrupt safetensors file {file.name}: shorter than its header")
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, 100 << 20):
                raise _fail(path, f"corrupt safetensors file {file.name}: header length {n} is impossible "
                                  f"for a {size}-byte file")
            header = json.loads(fh.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"corrupt safetensors file {file.name}: unreadable header ({exc})") from exc
    if not isinstance(header, dict):
        raise _fail(path, f"corrupt safetensors file {file.name}: header is not a mapping")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if 8 + n + max(ends, default=0) != size:
        raise _fail(path, f"corrupt safetensors file {file.name}: {size} bytes on disk, the header describes "
                          f"{8 + n + max(ends, default=0)} (truncated or overwritten)")
    return [k for k in header if k != "__metadata__"]


def _weight_files(path: Path) -> tuple[Path, ...]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise _fail(path, f"unreadable {index.name}: {exc}") from exc
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise _fail(path, f"weight shards listed in {index.name} are missing: {', '.join(missing)}")
        return tuple(path / s for s in shards)
    if (path / "model.safetensors").is_file():
        return (path / "model.safetensors",)
    raise _fail(path, "no weights (model.safetensors or model.safetensors.index.json); only safetensors "
                      "checkpoints are accepted")


def _fingerprint(path: Path, files: tuple[Path, ...]) -> str:
    """A hash of config.json and the weight files' names and sizes (cheap: no weight bytes read)."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in files:
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Check a checkpoint directory without loading it. Raises StartupError naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise _fail(path, "does not exist" if not path.exists() else "is not a directory")
    cfg_file = path / "config.json"
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise _fail(path, "no config.json (not a transformers checkpoint)") from exc
    except (OSError, ValueError) as exc:
        raise _fail(path, f"config.json is not valid JSON: {exc}") from exc
    family = config.get("model_type") if isinstance(config, dict) else None
    if family not in SUPPORTED:
        arch = ", ".join(config.get("architectures") or []) if isinstance(config, dict) else ""
        raise _fail(path, f"wrong architecture: model_type {family!r} ({arch or 'no architectures'}); "
                          f"the VLM judge needs one of {', '.join(SUPPORTED)}")
    for need, alternatives in (("tokenizer", ("tokenizer.json", "vocab.json")),
                               ("image processor", ("preprocessor_config.json", "processor_config.json"))):
        if not any((path / a).is_file() for a in alternatives):
            raise _fail(path, f"no {need} ({' or '.join(alternatives)})")
    files = _weight_files(path)
    names = frozenset(n for f in files for n in _safetensors_names(path, f))
    quant = config.get("quantization_config") or {}
    awq = str(quant.get("quant_method", "")).lower() == "awq"
    if quant and not awq:
        raise _fail(path, f"quantization {quant.get('quant_method')!r} is not supported (AWQ 4-bit only)")
    if awq:
        bad = sorted(n for n in names if "visual" in n.split(".") and n.endswith(_QUANT_SUFFIXES))
        if bad:
            raise _fail(path, f"the vision tower is quantized in this AWQ checkpoint ({bad[0]}, {len(bad)} "
                              "tensors); the judge keeps the vision tower in full precision: re-quantize with "
                              "tools/quantize_awq.py, which leaves it alone")
    return CheckpointInfo(path=path, config=config, family=family, awq=awq, weight_files=files,
                          tensor_names=names, fingerprint=f"{family}{'-awq' if awq else ''}:"
                                                          f"{_fingerprint(path, files)}")


@dataclass(slots=True)
class LoadedModel:
    model: Any  # the transformers model, in eval mode
    tokenizer: Any
    image_processor: Any
    info: CheckpointInfo
    device: Any  # torch.device
    dtype: Any  # torch.dtype


def _device_dtype(device: str, dtype: str, awq: bool, path: Path):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise _fail(path, "device: cuda is configured but torch sees no CUDA GPU")
    if dtype == "auto":
        if device == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "bfloat16" if awq else "float32"
    if awq and dtype == "float32":
        raise _fail(path, "AWQ checkpoints run in bfloat16 or float16, not float32")
    return torch.device(device), getattr(torch, dtype)


def load_model(model_dir: Path, device: str = "auto", dtype: str = "auto",
               attn_implementation: str = "sdpa") -> LoadedModel:
    """Load a checked checkpoint once. Every failure is a StartupError naming the directory."""
    info = inspect_checkpoint(model_dir)
    path = info.path
    if info.awq:
        try:
            import gptqmodel  # noqa: F401
        except ImportError as exc:
            raise _fail(path, f"an AWQ checkpoint needs gptqmodel (pip install gptqmodel==7.6.0): {exc}") from exc
    torch_device, torch_dtype = _device_dtype(device, dtype, info.awq, path)
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from edge_inspector.judge.vlm.processor import register_image_only_processors

    register_image_only_processors()
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if info.awq:
            q = config.quantization_config
            current = q.get("modules_to_not_convert") if isinstance(q, dict) else q.modules_to_not_convert
            skip = sorted(set(current or []) | set(VISION_SKIP))
            if isinstance(q, dict):
                q["modules_to_not_convert"] = skip
            else:
                q.modules_to_not_convert = skip
        model, loading = AutoModelForImageTextToText.from_pretrained(
            path, config=config, dtype=torch_dtype, device_map=str(torch_device), local_files_only=True,
            attn_implementation=attn_implementation, output_loading_info=True)
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except StartupError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; all mean "cannot load"
        raise _fail(path, f"cannot load: {type(exc).__name__}: {exc}") from exc
    missing = sorted(loading.get("missing_keys") or [])
    if missing:
        raise _fail(path, f"weights missing from the checkpoint (they would be random): {', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''} ({len(missing)} tensors)")
    model.eval()
    return LoadedModel(model=model, tokenizer=processor.tokenizer, image_processor=processor.image_processor,
                       info=info, device=torch_device, dtype=torch_dtype)
