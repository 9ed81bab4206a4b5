"""Build tiny random checkpoints offline, in the layout of the real ones, for tests and CPU benchmarks.

    python tools/make_tiny_models.py --out DIR

writes ``DIR/qwen2_5_vl``, ``DIR/qwen2_5_vl-awq`` (AWQ 4-bit through gptqmodel, with
tools/quantize_awq.py), ``DIR/qwen3_vl`` and ``DIR/sam``: config, safetensors, tokenizer, image
processor and chat template, so that the production loading path reads them like a downloaded model.
Nothing is fetched from a hub. The same builders make the GPU benchmark's 3B-shaped model
(``qwen2_5_vl_config(tokenizer, "3b")``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# The words the judge's prompt and answers use, so that "Yes"/"No" and the taxonomy are few tokens.
_CORPUS = """
defective: yes no Yes No YES NO defect_type: region: description: none
You inspect parts on a production line. Answer in the fixed form. The part is a bare printed circuit board.
open short mousebite spur spurious_copper pin_hole copper trace pad via substrate scratch missing extra
Known-good reference image. Frame under inspection. Region 1 Region 2 Region 3 zoomed crop of a suspicious
region. Defect taxonomy. Domain rules. The board looks fine. A trace is broken. I'm sorry, I cannot help.
{"defective": true, "defect_type": "short", "region": 1, "description": "a bridge between two traces"}
"""

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE trained on a few sentences, wrapped as the Qwen2 tokenizer with Qwen's specials."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS[:1],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def _token_ids(tok) -> dict[str, int]:
    ids = {name: tok.convert_tokens_to_ids(f"<|{name}|>") for name in
           ("vision_start", "vision_end", "image_pad", "video_pad", "im_end", "endoftext")}
    return {"image_token_id": ids["image_pad"], "video_token_id": ids["video_pad"],
            "vision_start_token_id": ids["vision_start"], "vision_end_token_id": ids["vision_end"],
            "eos": ids["im_end"], "pad": ids["endoftext"]}


def qwen2_5_vl_config(tok, size: str = "tiny"):
    """A Qwen2.5-VL config: ``tiny`` (about 600k parameters) or ``3b`` (the shapes of Qwen2.5-VL-3B)."""
    from transformers import Qwen2_5_VLConfig

    ids = _token_ids(tok)
    if size == "3b":
        text = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                      fullatt_block_indexes=[7, 15, 23, 31], window_size=112, tokens_per_second=2)
        tie = True
    else:
        # AWQ's clip search needs every quantized Linear's output width to be a multiple of 64
        text = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=32768,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]})
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=128,
                      fullatt_block_indexes=[1], window_size=112, tokens_per_second=2)
        tie = False
    text.update(bos_token_id=ids["pad"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tie,
                            **{k: v for k, v in ids.items() if k.endswith("token_id")})


def qwen3_vl_config(tok):
    from transformers import Qwen3VLConfig

    ids = _token_ids(tok)
    text = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32, vocab_size=len(tok), max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 6, 6],
                                 "mrope_interleaved": True},
                bos_token_id=ids["pad"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=128,
                  patch_size=16, num_position_embeddings=256, deepstack_visual_indexes=[0])
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                         **{k: v for k, v in ids.items() if k.endswith("token_id")})


def image_processor(patch_size: int):
    """The image processor of a Qwen-VL checkpoint (saved as the class name real checkpoints carry)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    mean, std = ([0.5] * 3, [0.5] * 3) if patch_size == 16 else (
        [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
    return Qwen2VLImageProcessorPil(patch_size=patch_size, merge_size=2, temporal_patch_size=2,
                                    min_pixels=(patch_size * 2) ** 2 * 4, max_pixels=(patch_size * 2) ** 2 * 1280,
                                    image_mean=mean, image_std=std)


_TYPES = ["open", "short", "mousebite", "spur", "spurious_copper", "pin_hole"]


def _answer(rng) -> str:
    if rng.random() < 0.5:
        return " no\ndefect_type: none\nregion: none\ndescription: the part looks like the reference"
    return (f" yes\ndefect_type: {_TYPES[rng.integers(len(_TYPES))]}\nregion: {rng.integers(1, 3)}\n"
            "description: a trace is broken")


def teach_answer_format(model, tok, steps: int = 120, length: int = 64, batch: int = 16, seed: int = 0) -> None:
    """A few seconds of training so that answers sampled after ``defective:`` keep the judge's form
    (random weights alone answer garbage, which the judge rightly rejects). The context before the
    answer is random tokens at random positions; the loss is on the answer only. The decision stays a coin flip."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    head = tok.encode("<|im_end|>\n<|im_start|>assistant\ndefective:", add_special_tokens=False)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    n_plain = len(tok) - len(SPECIAL_TOKENS)
    params = [p for n, p in model.named_parameters() if "visual" not in n]
    opt = torch.optim.Adam(params, lr=3e-3)
    model.train()
    for _ in range(steps):
        ids, labels = [], []
        for _ in range(batch):
            ans = tok.encode(_answer(rng), add_special_tokens=False) + [end]
            ctx = rng.integers(1, n_plain, length - len(head) - len(ans)).tolist()
            ids.append(ctx + head + ans)
            labels.append([-100] * (len(ctx) + len(head)) + ans)
        # random position offsets: the judge's prompts put the answer hundreds of positions in
        offsets = torch.tensor(rng.integers(0, 2000, batch))[:, None]
        out = model(input_ids=torch.tensor(ids), labels=torch.tensor(labels),
                    position_ids=offsets + torch.arange(length)[None, :])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()


def save_vlm(config, tok, patch_size: int, out: Path, seed: int = 0, teach: bool = True) -> Path:
    """Random weights for ``config`` (taught the answer form when ``teach``), saved with tokenizer and
    image processor like a hub checkpoint."""
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    if teach:
        teach_answer_format(model, tok, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    proc = image_processor(patch_size)
    proc.save_pretrained(out)
    # real checkpoints name the (torchvision-backed) class; transformers falls back to PIL without it
    cfg_path = out / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["image_processor_type"] = "Qwen2VLImageProcessor"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return out


def save_sam(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    torch.manual_seed(seed)
    config = SamConfig(
        vision_config=dict(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2,
                           global_attn_indexes=[1], mlp_dim=64, window_size=4, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))
    SamModel(config).save_pretrained(out)
    SamProcessor(image_processor=SamImageProcessorPil()).save_pretrained(out)
    return out


def build_all(out: Path, awq: bool = True) -> dict[str, Path]:
    tok = build_tokenizer()
    paths = {
        "qwen2_5_vl": save_vlm(qwen2_5_vl_config(tok), tok, 14, out / "qwen2_5_vl"),
        "qwen3_vl": save_vlm(qwen3_vl_config(tok), tok, 16, out / "qwen3_vl"),
        "sam": save_sam(out / "sam"),
    }
    if awq:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from quantize_awq import quantize

        paths["qwen2_5_vl-awq"] = quantize(paths["qwen2_5_vl"], out / "qwen2_5_vl-awq", images=None,
                                           group_size=32)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="directory to write the checkpoints into")
    ap.add_argument("--no-awq", action="store_true", help="skip the AWQ checkpoint (needs gptqmodel)")
    args = ap.parse_args(argv)
    for name, path in build_all(args.out, awq=not args.no_awq).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
