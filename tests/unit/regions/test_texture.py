"""The texture model on a synthetic machined surface: brushed streaks, uneven light, no alignment."""

import cv2
import numpy as np
import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.config import load_config
from edge_inspector.errors import StartupError
from edge_inspector.regions import build_regions
from edge_inspector.regions.boxes import iou
from edge_inspector.regions.texture import TextureConfig, TextureFinder, TextureModel

FAST = dict(bank_size=2048)


def surface(seed: int, size=(240, 320), pits=()) -> np.ndarray:
    """Brushed metal: horizontal streaks of random strength, a light gradient, sensor noise; each pit a
    dark rough blob (x, y, radius)."""
    rng = np.random.default_rng(seed)
    h, w = size
    noise = rng.normal(0, 1, (h, w)).astype(np.float32)
    streaks = cv2.GaussianBlur(noise, (0, 0), sigmaX=12, sigmaY=0.8)
    img = 150 + 12 * streaks / (streaks.std() + 1e-6)
    img += np.linspace(-20, 20, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
    img += rng.normal(0, 3, (h, w))
    for x, y, r in pits:
        yy, xx = np.mgrid[:h, :w]
        blob = ((xx - x) ** 2 + (yy - y) ** 2) < r * r
        img[blob] = 60 + rng.normal(0, 30, blob.sum())
    return np.clip(img, 0, 255).astype(np.uint8)



@pytest.fixture(scope="module")
def model():
    return TextureModel(TextureConfig(**FAST), [surface(s) for s in range(4)])


def test_good_surfaces_have_no_box(model):
    for seed in (101, 102, 103):
        r = model.find(surface(seed))
        assert r.boxes == () and r.score < 1.0


def test_a_pit_is_boxed_where_it_is(model):
    r = model.find(surface(104, pits=[(200, 120, 9)]))
    assert r.score >= 1.0 and r.boxes
    assert iou(r.boxes[0].as_list(), [191, 111, 209, 129]) > 0.33
    assert r.anomaly_map.shape == (240, 320) and r.anomaly_map.dtype == np.float32


def test_unaligned_frames_are_fine(model):
    big = surface(105, size=(300, 400))  # another size, and windows shifted anywhere: no registration
    assert model.find(big).boxes == ()
    assert model.find(np.ascontiguousarray(big[23:263, 37:357])).boxes == ()


def test_learning_from_the_known_good_areas_only():
    # the same kind of pit appears in every training image: unmasked, it is learnt as normal
    pits = [surface(s, pits=[(80, 60, 9)]) for s in range(4)]
    masks = [np.zeros((240, 320), np.uint8) for _ in pits]
    for m in masks:
        cv2.circle(m, (80, 60), 14, 255, -1)
    test = surface(110, pits=[(220, 150, 9)])
    blind = TextureModel(TextureConfig(**FAST), pits).find(test)
    seeing = TextureModel(TextureConfig(**FAST), pits, masks).find(test)
    assert seeing.boxes and seeing.score > blind.score


def test_gaussian_model_and_rotation_invariance():
    goods = [surface(s) for s in range(3)]
    g = TextureModel(TextureConfig(model="gaussian", **FAST), goods)
    assert g.find(surface(120, pits=[(160, 120, 10)])).boxes
    rot = TextureModel(TextureConfig(rotation_invariant=True, **FAST), goods)
    turned = np.ascontiguousarray(np.rot90(surface(121, size=(320, 320))))
    assert rot.find(turned).score < TextureModel(TextureConfig(**FAST), goods).find(turned).score


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="too small"):
        model.find(np.zeros((4, 4), np.uint8))
    with pytest.raises(StartupError, match="at least one"):
        TextureModel(TextureConfig(), [])
    with pytest.raises(StartupError, match="a mask is"):
        TextureModel(TextureConfig(), [surface(1)], [np.zeros((10, 10), np.uint8)])
    flat = model.find(np.full((240, 320), 150, np.uint8))  # no texture at all: anomalous, never a crash
    assert np.isfinite(flat.anomaly_map).all()


def test_folder_config_and_build(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    for s in range(3):
        cv2.imwrite(str(good / f"g{s}.png"), surface(s, pits=[(60, 60, 9)]))
        mask = np.zeros((240, 320), np.uint8)
        cv2.circle(mask, (60, 60), 14, 255, -1)
        cv2.imwrite(str(good / f"g{s}.mask.png"), mask)
    cfg = load_config(None, ["regions.kind=texture", f"regions.good_images={good}", "regions.bank_size=2048",
                             "regions.zoom.size=96", "regions.zoom.max_crops=1"])
    finder = build_regions(cfg.regions)
    assert finder.model.samples == 3 and finder.fingerprint.startswith("texture-")
    frame = PartFactory(1.0).trigger("cam").frame(surface(130, pits=[(250, 180, 10)]))
    r = finder.find(frame)
    assert r.boxes and len(r.crops) == 1 and r.crops[0].shape == (96, 96)
    (good / "g9.mask.png").write_bytes(cv2.imencode(".png", np.zeros((5, 5), np.uint8))[1].tobytes())
    cv2.imwrite(str(good / "g9.png"), surface(9))
    with pytest.raises(StartupError, match="g9.mask.png is 5x5"):
        TextureFinder(cfg.regions)


def test_per_part_reference_is_one_shot():
    finder = TextureFinder(TextureConfig(**FAST))
    trig = PartFactory(1.0).trigger("cam")
    r = finder.find(trig.frame(surface(140, pits=[(100, 100, 10)]), reference=surface(0)))
    assert r.boxes
    with pytest.raises(ValueError, match="no known-good images"):
        finder.find(trig.frame(surface(141)))
