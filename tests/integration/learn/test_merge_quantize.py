"""After a fine-tune: the merged checkpoint equals base + adapter, loads through the judge's loader and
judges a part; AWQ quantization calibrated on the dataset, and the parity report against the merged model."""

from __future__ import annotations

import json

import pytest

from edge_inspector.learn.dataset import load_dataset
from edge_inspector.learn.train import RunError, load_base, make_encoder

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def merged(trained):
    from edge_inspector.learn.merge import merge

    return merge(trained.run_dir)


def _logits(model, batch):
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_the_merged_model_gives_the_logits_of_base_plus_adapter(trained, merged, tiny_qwen, dataset_dir):
    from peft import PeftModel

    from edge_inspector.judge.vlm.loading import load_model
    from edge_inspector.learn.encode import collate

    loaded, processor = load_base(tiny_qwen, "cpu", "auto")
    enc = make_encoder(loaded, processor, 1024 * 1024)
    data = load_dataset(dataset_dir)
    batch = collate([enc.encode(e) for e in data.val], loaded.tokenizer.pad_token_id, enc.encoder.image_token)
    base_logits = _logits(loaded.model, batch)
    peft_model = PeftModel.from_pretrained(loaded.model, trained.run_dir / "adapter").eval()
    adapted = _logits(peft_model, batch)
    m = load_model(merged, device="cpu")  # the judge's own loader
    merged_logits = _logits(m.model, batch)
    assert torch.allclose(merged_logits, adapted, atol=1e-4, rtol=1e-4)
    assert (merged_logits - base_logits).abs().max() > 1e-2  # the fine-tune changed the model
    run = json.loads((trained.run_dir / "run.json").read_text())
    assert run["merged"] == "merged"
    prov = json.loads((merged / "edge_inspector_run.json").read_text())
    assert prov["dataset_hash"] == run["dataset_hash"] and prov["base"] == str(tiny_qwen.resolve())


def test_the_merge_changes_the_language_models_linear_weights_only(merged, tiny_qwen):
    from safetensors.torch import load_file

    before = load_file(str(tiny_qwen / "model.safetensors"))
    after = load_file(str(merged / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # the saved layout names the decoder model.layers.N (the language model) and the tower visual.*
    assert changed and all(".layers." in k and k.endswith("proj.weight") for k in changed)
    assert not any("visual" in k for k in changed)
    assert len(changed) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert all(torch.equal(before[k], after[k]) for k in before if "visual" in k or "embed" in k or "norm" in k)


def test_the_judge_runs_on_the_merged_model(merged):
    from judge_parts import synthetic_parts

    from edge_inspector.judge.vlm import VlmJudgeConfig, build

    judge = build(VlmJudgeConfig(model_dir=merged, votes=0, device="cpu", cascade={"enabled": False}),
                  warm_up=False)
    part = synthetic_parts(1, seed=3, size=224)[0]
    p = judge.judge(part.frame(), part.regions(), part.frame().deadline_mono).details["p_logit"]
    assert 0.0 < p < 1.0


def test_an_unfinished_run_is_not_merged(tmp_path):
    from edge_inspector.learn.merge import merge

    (tmp_path / "run.json").write_text(json.dumps({"base": "x", "finished": False}))
    with pytest.raises(RunError, match="has not finished"):
        merge(tmp_path)


def test_quantize_on_the_dataset_and_parity(trained, merged, dataset_dir):
    pytest.importorskip("gptqmodel")
    import parity
    import quantize_awq

    from edge_inspector.judge.vlm.loading import inspect_checkpoint

    awq = quantize_awq.quantize(merged, trained.run_dir / "awq", samples=4, group_size=32,
                                calib_dataset=dataset_dir)
    info = inspect_checkpoint(awq)
    assert info.awq and "model.visual" in info.config["quantization_config"]["modules_to_not_convert"]
    out = trained.run_dir / "parity.json"
    rc = parity.main([str(merged), str(awq), "--n", "2", "--device", "cpu", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["n"] == 2 and report["quantized"] == str(awq)
    assert rc == (0 if report["ok"] else 1)
    assert all(0.0 < p["p_original"] < 1.0 and 0.0 < p["p_quantized"] < 1.0 for p in report["parts"])
    assert report["max_diff"] == max(abs(p["p_original"] - p["p_quantized"]) for p in report["parts"])


def test_a_qwen3_vl_base_trains_and_merges(tiny_qwen3, dataset_dir, tmp_path):
    from edge_inspector.judge.vlm.loading import load_model
    from edge_inspector.learn.merge import merge
    from edge_inspector.learn.train import LoraSettings, TrainSettings, train

    run = train(dataset_dir, tiny_qwen3, tmp_path / "run", TrainSettings(steps=3, lr=3e-3, batch=4,
                lora=LoraSettings(rank=4)), device="cpu", progress=False)
    assert run.loss[-1] < run.loss[0]
    merged = load_model(merge(tmp_path / "run"), device="cpu")
    assert merged.info.family == "qwen3_vl"
