"""The texture model on real images: BSData ball-screw surfaces with pitting polygons
(../shared/data/bsdata, CC BY-SA 4.0; see its ATTRIBUTION.md). Skipped when the folder is absent.

Fit on part of the authors' train split (the known-good areas: the pitting polygons masked out), scored
on their test split. The full figures come from ``python tools/bsdata.py --out DIR`` (docs/regions.md);
this test keeps a floor under the map's ranking of pitting, which is what the threshold works on."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "bsdata"

pytestmark = pytest.mark.skipif(not (DATA / "index.json").is_file(), reason=f"{DATA} is absent")


@pytest.fixture(scope="module")
def split():
    sys.path.insert(0, str(REPO / "tools"))
    from bsdata import load_index, polygon_mask

    items = load_index(DATA)
    train = [i for i in items if i["split"] == "train"][::3]  # a third of it: a fast fit
    test = [i for i in items if i["split"] == "test"]
    read = lambda it: cv2.imread(it["path"])  # noqa: E731
    fit = [(read(it), it["polygons"]) for it in train]
    return ([img for img, _ in fit], [polygon_mask(img.shape[:2], p) for img, p in fit],
            [(read(it), it["polygons"]) for it in test], polygon_mask)


def test_the_map_ranks_pitting_above_the_surface_around_it(split):
    from edge_inspector.regions.texture import TextureConfig, TextureModel

    images, masks, test, polygon_mask = split
    model = TextureModel(TextureConfig(bank_size=2048), images, masks)
    ranks, peaks = [], []
    for img, polys in test:
        a, s = model.anomaly_map(img)
        a = cv2.resize(a, (img.shape[1], img.shape[0]))
        around = cv2.dilate(polygon_mask(img.shape[:2], polys), np.ones((61, 61), np.uint8)) == 0
        surface = a[around & (a > 0)]
        for p in polys:
            inside = a[polygon_mask(img.shape[:2], [p]) > 0]
            if inside.size:
                ranks.append(float((surface < inside.max()).mean()))
                peaks.append(float(inside.max()))
    ranks = np.array(ranks)
    # the strongest response in a pit is above most of the surface of its image (measured: median
    # rank 0.99); but under the calibrated threshold in most pits (see docs/regions.md)
    assert len(ranks) >= 15
    assert np.median(ranks) > 0.95, ranks.round(3)
    assert (ranks > 0.9).mean() >= 0.7, ranks.round(3)
