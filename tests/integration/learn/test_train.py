"""LoRA fine-tuning on the tiny Qwen2.5-VL: the encoding is the judge's, the loss falls on a set the
model can learn, only the adapters change (vision tower frozen), and a resumed run gives the losses of
an uninterrupted one."""

from __future__ import annotations

import json

import pytest

from edge_inspector.learn.dataset import load_dataset
from edge_inspector.learn.train import (LoraSettings, RunError, TrainSettings, build_peft, checkpoints, load_base,
                                        make_encoder, read_run, train)

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tiny_qwen):
    return load_base(tiny_qwen, "cpu", "auto")


def test_a_conversation_is_encoded_as_the_judge_encodes_its_prompt(base, dataset_dir):
    """The training prompt is token for token what the judge prefills, up to its ``defective:``."""
    import cv2

    from edge_inspector.judge.vlm.encode import PromptEncoder
    from edge_inspector.judge.vlm.prompt import build_prompt
    from edge_inspector.learn.encode import IGNORE
    from edge_inspector.recipe import load_recipe

    from dataset_fixture import RECIPE

    loaded, processor = base
    ex = load_dataset(dataset_dir).train[1]
    enc = make_encoder(loaded, processor, 1024 * 1024).encode(ex)
    ref, frame = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in ex.images)
    prompt = build_prompt(load_recipe(RECIPE), frame, part_reference=ref)
    judge = PromptEncoder(loaded.tokenizer, loaded.image_processor, loaded.model.config,
                          {"frame": 1024 * 1024, "crop": 448 * 448, "reference": 1024 * 1024}, loaded.device,
                          loaded.dtype).encode(list(prompt.prefix) + list(prompt.suffix))
    n_prompt = enc.labels.count(IGNORE)
    assert enc.ids[:n_prompt] + loaded.tokenizer.encode("defective:", add_special_tokens=False) == \
        judge.ids[:n_prompt + len(loaded.tokenizer.encode("defective:", add_special_tokens=False))]
    assert enc.ids[:len(judge.ids)] == judge.ids  # ... and the answer starts with the judge's prefill
    assert torch.equal(enc.grids, judge.grids.cpu())
    assert torch.allclose(enc.pixel_values, judge.pixel_values.cpu())
    answer = [t for t in enc.labels if t != IGNORE]
    assert loaded.tokenizer.decode(answer) == ex.answer + "<|im_end|>"
    assert enc.labels[:n_prompt] == [IGNORE] * n_prompt and enc.ids[n_prompt:] == answer


def test_a_padded_training_batch_gives_the_judges_logits(base, dataset_dir):
    """3-D rope positions as the judge's engine computes them, per row, despite the padding."""
    from edge_inspector.judge.vlm.engine import Engine, SamplingSettings
    from edge_inspector.learn.encode import collate

    loaded, processor = base
    encoder = make_encoder(loaded, processor, 1024 * 1024)
    rows = [encoder.encode(e) for e in load_dataset(dataset_dir).train[:2]]
    assert len(rows[0].ids) != len(rows[1].ids)  # one row is padded
    batch = collate(rows, loaded.tokenizer.pad_token_id, encoder.encoder.image_token)
    with torch.no_grad():
        together = loaded.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        engine = Engine(loaded, {"frame": 1024 * 1024}, SamplingSettings())
        start = 0
        for r, row in enumerate(rows):
            n_img = 2
            patches = int(row.grids.prod(-1).sum())
            positions = engine._positions(row.ids, row.grids)
            alone = loaded.model(input_ids=torch.tensor([row.ids]), position_ids=positions,
                                 pixel_values=batch["pixel_values"][start:start + patches],
                                 image_grid_thw=batch["image_grid_thw"][r * n_img:(r + 1) * n_img]).logits
            start += patches
            assert torch.allclose(together[r, :len(row.ids)], alone[0], atol=1e-4), r


def test_only_language_model_adapters_are_trainable(tiny_qwen):
    loaded, _ = load_base(tiny_qwen, "cpu", "auto")
    model = build_peft(loaded.model, LoraSettings(rank=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    kinds = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    loaded, _ = load_base(tiny_qwen, "cpu", "auto")
    with_vision = build_peft(loaded.model, LoraSettings(rank=4, vision=True))
    tuned = [n for n, p in with_vision.named_parameters() if p.requires_grad]
    assert any("visual.blocks" in n for n in tuned) and any("visual.merger" in n for n in tuned)
    assert all("lora_" in n for n in tuned) and not any("lm_head" in n for n in tuned)


def test_the_loss_falls_on_a_set_the_model_can_learn(trained):
    loss = trained.loss
    assert len(loss) == 16
    assert loss[-1] < 0.5 * loss[0], loss
    assert trained.val_loss < trained.val_loss_before
    run = json.loads((trained.run_dir / "run.json").read_text())
    assert run["finished"] is True and run["steps"] == 16 and run["loss"] == loss
    assert run["dataset_hash"] == load_dataset(run["dataset"]).dataset_hash
    assert run["lora"]["rank"] == 8 and run["lora"]["vision"] is False and run["val_loss"] == trained.val_loss
    assert run["lora"]["target_modules"] == {"count": 14, "language_model": 14, "vision": 0, "kinds": [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]}
    assert (trained.run_dir / "adapter/adapter_model.safetensors").is_file()


def test_the_adapter_holds_language_model_lora_tensors_only(trained):
    from safetensors.torch import load_file

    names = list(load_file(str(trained.run_dir / "adapter/adapter_model.safetensors")))
    assert names and all(("lora_A" in n or "lora_B" in n) and "language_model" in n for n in names)


def test_training_leaves_every_base_weight_as_it_was(trained, tiny_qwen):
    fresh, _ = load_base(tiny_qwen, "cpu", "auto")
    base = fresh.model.state_dict()
    seen, lora = set(), 0
    for name, p in trained.model.named_parameters():
        if "lora_" in name:
            lora += 1
            continue
        key = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        assert torch.equal(p.detach(), base[key]), key
        seen.add(key)
    assert lora == 2 * 14 and seen == {k for k, _ in fresh.model.named_parameters()}


def test_a_resumed_run_gives_the_losses_of_an_uninterrupted_one(tiny_qwen, dataset_dir, tmp_path):
    from safetensors.torch import load_file

    settings = TrainSettings(steps=8, lr=3e-3, batch=1, save_every=3, lora=LoraSettings(rank=4))
    whole = train(dataset_dir, tiny_qwen, tmp_path / "whole", settings, device="cpu", progress=False)

    def interrupt(step, _loss):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(dataset_dir, tiny_qwen, tmp_path / "cut", settings, device="cpu", progress=False, on_step=interrupt)
    assert [c.name for c in checkpoints(tmp_path / "cut")] == ["step-000003", "step-000005"]
    cut = read_run(tmp_path / "cut")
    assert cut["finished"] is False and cut["steps"] == 5
    with pytest.raises(RunError, match="already holds a run"):
        train(dataset_dir, tiny_qwen, tmp_path / "cut", settings, device="cpu", progress=False)
    other = TrainSettings(steps=8, lr=1e-3, batch=1, save_every=3, lora=LoraSettings(rank=4))
    with pytest.raises(RunError, match="other settings"):
        train(dataset_dir, tiny_qwen, tmp_path / "cut", other, resume=True, device="cpu", progress=False)

    resumed = train(dataset_dir, tiny_qwen, tmp_path / "cut", settings, resume=True, device="cpu", progress=False)
    assert resumed.loss[:5] == cut["loss"]
    assert resumed.loss == pytest.approx(whole.loss, rel=1e-5, abs=1e-6)
    assert whole.loss[0] != whole.loss[-1]  # the steps are not all the same
    a = load_file(str(tmp_path / "whole/adapter/adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut/adapter/adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed.val_loss == pytest.approx(whole.val_loss, rel=1e-5)


def test_vision_adapters_train_and_gradient_checkpointing_gives_the_same_losses(tiny_qwen, dataset_dir, tmp_path):
    from safetensors.torch import load_file

    runs = [train(dataset_dir, tiny_qwen, tmp_path / f"gc{gc}", TrainSettings(
        steps=3, lr=3e-3, batch=2, gradient_checkpointing=gc, lora=LoraSettings(rank=4, vision=True)),
        device="cpu", progress=False) for gc in (False, True)]
    assert runs[1].loss == pytest.approx(runs[0].loss, rel=1e-4)
    names = list(load_file(str(tmp_path / "gcFalse/adapter/adapter_model.safetensors")))
    assert any("visual" in n for n in names) and any("language_model" in n for n in names)
    assert runs[0].record["lora"]["target_modules"]["vision"] > 0
