"""Training runs made from the tiny checkpoint, as `edge-inspector train` leaves them (run.json,
adapter/, merged/), whose merged model behaves in a known way: ``towards="yes"`` answers "defective"
on every part, ``"no"`` on none. The last attention layer's value bias feeds a constant direction
into the residual stream (through one column of its output projection) that the final norm and the
LM head turn into a large yes-minus-no margin; the checkpoint keeps the real architecture and loads
through the judge's own path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def _decision_ids(tokenizer) -> tuple[list[int], list[int]]:
    sides = []
    for words in (("yes", "Yes", "YES"), ("no", "No", "NO")):
        ids = set()
        for w in words:
            for variant in (w, " " + w):
                t = tokenizer.encode(variant, add_special_tokens=False)
                if len(t) == 1:
                    ids.add(t[0])
        sides.append(ids)
    yes, no = sides
    return sorted(yes - no), sorted(no - yes)


def biased_copy(src: Path, dst: Path, towards: str, strength: float = 400.0) -> Path:
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    shutil.copytree(src, dst)
    text = json.loads((dst / "config.json").read_text())["text_config"]
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    sharing = text["num_attention_heads"] // text["num_key_value_heads"]  # heads on kv head 0
    sd = load_file(str(dst / "model.safetensors"))
    yes, no = _decision_ids(AutoTokenizer.from_pretrained(dst))
    head = sd["lm_head.weight"]
    u = sd["model.norm.weight"] * (head[yes].mean(0) - head[no].mean(0))
    direction = (u if towards == "yes" else -u) / u.norm()
    last = max(int(k.split(".")[2]) for k in sd if k.startswith("model.layers."))
    attn = f"model.layers.{last}.self_attn."
    sd[attn + "v_proj.weight"][0].zero_()
    sd[attn + "v_proj.bias"][0] = 1.0  # value channel 0 is 1 whatever the attention looks at
    o = sd[attn + "o_proj.weight"]
    for h in range(1, sharing):
        o[:, h * head_dim] = 0.0  # the other heads reading kv head 0 add nothing of it ...
    o[:, 0] = strength * direction  # ... head 0 puts the constant into the residual stream
    sd["model.norm.weight"] = sd["model.norm.weight"] * 4.0
    save_file({k: v.contiguous() for k, v in sd.items()}, str(dst / "model.safetensors"),
              metadata={"format": "pt"})
    return dst


def make_run(root: Path, name: str, base: Path, towards: str, dataset_hash: str = "ds-1") -> Path:
    run = root / name
    run.mkdir(parents=True)
    biased_copy(base, run / "merged", towards)
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8,
                                                                     "peft_type": "LORA"}))
    (run / "run.json").write_text(json.dumps({"base": str(base), "dataset": str(root / "dataset"),
                                              "dataset_hash": dataset_hash, "lora": {"r": 4, "alpha": 8},
                                              "steps": 3, "loss": [2.1, 1.7, 1.4], "finished": True}))
    return run
