"""The texture model's settings (``regions.kind: texture``): what it learns from, its features, its
explainers, its calibration and its boxes. The model itself is ``texture.py``; the config loader
imports only this."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge_inspector.config_base import ConfigPath
from edge_inspector.regions.boxes import BoxParams
from edge_inspector.regions.refine import RefineFields

Explainer = Literal["bank", "position", "self"]


def _texture_boxes() -> BoxParams:
    return BoxParams(min_area_px=16, merge_distance_px=8, margin_px=0, min_size_px=4)


class TextureConfig(RefineFields):
    kind: Literal["texture"] = Field("texture", description="The texture model (unaligned parts, surfaces).")
    reference: ConfigPath | None = Field(
        None, description="A known-good image of the product, learnt from (alone: one-shot). Without "
        "it and good_images, every part must bring its own reference (`inspect --reference`).")
    good_images: ConfigPath | None = Field(
        None, description="A folder of further known-good images. A file NAME.mask.png beside NAME.png marks "
        "areas not to learn from (non-zero pixels: a defect, or anything not certified good).")
    model: Literal["knn", "gaussian"] = Field("knn", description="The bank explainer: knn, the distance to "
                                              "the nearest good patch (multi-modal surfaces); gaussian, the "
                                              "Mahalanobis distance to one Gaussian of the good patches.")
    explainers: tuple[Explainer, ...] = Field(
        ("bank", "position", "self"), min_length=1, description="What may explain a patch away (the anomaly "
        "is the smallest of their normalised distances): bank, the known-good patches anywhere; position, "
        "the known-good images' patches at the same place (used when they share the frame's size: aligned "
        "views); self, the frame's own surface away from the patch.")
    scale: float = Field(0.5, gt=0, le=1, description="Working scale: frames are resized by this factor "
                         "first. Box sizes and areas are in working pixels.")
    max_side_px: int = Field(1024, ge=64, description="The working image's longer side is at most this "
                             "(bounds the cost on large frames).")
    patch_px: int = Field(8, ge=2, le=64, description="Patch size (working pixels): features are pooled "
                          "over a Gaussian window of this width.")
    stride_px: int = Field(4, ge=1, le=32, description="Distance between patch centres (working pixels).")
    scales: tuple[float, ...] = Field((0.5, 1.0, 2.0, 4.0), min_length=1, description="Filter-bank "
                                      "scales (Gaussian sigma, working pixels): the finest, one frame "
                                      "pixel at scale 0.5, sees the grain inside a pit.")
    color: bool = Field(True, description="Use the chroma of colour frames (Lab a, b) as features.")
    blob_features: bool = Field(True, description="Add spot features per scale (the weakest oriented "
                                "energy, the Hessian determinant, the dark-spot Laplacian, each the "
                                "strongest in the patch): pits and dents on grooved or brushed surfaces.")
    rotation_invariant: bool = Field(False, description="Sort the oriented energies per scale, so that "
                                     "a rotated texture looks the same (for parts that turn).")
    bank_size: int = Field(2048, ge=64, description="Good patches kept in the knn memory bank (its cost "
                           "grows with it).")
    outlier_fraction: float = Field(0.0, ge=0, lt=0.5, description="The rarest fraction of the "
                                    "known-good patches (farthest from the others) is left out of the "
                                    "bank: likely unlabelled defects in the known-good images.")
    bank_slack: float = Field(1.5, ge=1.0, description="The bank's normalised distance is multiplied by "
                              "this before it competes with the other explainers: known-good images that "
                              "hold unlabelled defects must not explain a defect away by a small margin.")
    position_window_px: int = Field(8, ge=0, le=64, description="The position explainer looks this far "
                                    "(working pixels) around the same place in each known-good image "
                                    "(the views' misalignment).")
    position_k: int = Field(2, ge=1, description="The position explainer takes the k-th closest known-good "
                            "image: a defect that one of them holds unlabelled at the same place is not "
                            "learnt as normal.")
    position_images: int = Field(16, ge=1, description="Known-good images kept per frame size for the "
                                 "position explainer (bounds its memory and cost).")
    self_exclusion_px: int = Field(32, ge=4, description="The self explainer compares a patch with its "
                                   "frame's patches farther than this (working pixels): about the size of "
                                   "a large defect, so that a defect cannot explain itself.")
    self_stride: int = Field(2, ge=1, le=8, description="The self explainer compares with every n-th patch "
                             "in each direction (cost against coverage).")
    self_slack: float = Field(1.1, ge=1.0, description="The self explainer's normalised distance is "
                              "multiplied by this before it competes: a frame's own pit-like patches (a "
                              "second pit, a soiling flake, the far side of a large pit) must not explain a "
                              "pit away by a small margin.")
    self_refs: int = Field(6144, ge=256, description="At most this many patches of a frame serve the self "
                           "explainer (the stride grows on large frames: its cost is patches x this).")
    false_box_rate: float = Field(0.12, gt=0, lt=0.5, description="Calibration: the threshold is the value "
                                  "that the maximum of a held-out known-good image exceeds with this "
                                  "probability (a Gumbel fitted to the lower half of their maxima): the "
                                  "expected share of good frames with a false box, at sensitivity 1.")
    calibration_images: int = Field(40, ge=2, description="At most this many held-out known-good images "
                                    "are scored for the calibration (bounds the fit time).")
    calibration_rounds: int = Field(3, ge=1, le=16, description="Calibration: the known-good images are "
                                    "dealt into folds this many times, each time in another order, and "
                                    "the threshold is the median of the rounds' (one assignment of folds "
                                    "is one draw; the fit time grows with it).")
    sensitivity: float = Field(1.0, gt=0, description="Divides the calibrated threshold: above 1 flags more.")
    box_level: float = Field(0.3, gt=0, lt=1, description="A box covers the region around its peak where "
                             "the map is at least this fraction of the peak: the anomaly's extent, "
                             "whatever the threshold.")
    box_grow: float = Field(1.1, ge=1.0, le=3.0, description="Each box is grown about its centre by this "
                            "factor (annotations enclose a defect with a margin).")
    box_footprint_px: float = Field(12.0, ge=0, description="The width (working pixels) that the map's blur "
                                    "(patch pooling, smoothing) gives a point-like anomaly at box_level: "
                                    "taken off each box's width and height in quadrature, so that a pit of a "
                                    "few pixels gets a box of its own size.")
    neighbour_spots: bool = Field(True, description="Beside each compact box, separate dark spots at the "
                                  "frame's own resolution get a box each: two small pits a few pixels apart "
                                  "make one region of the map (its patch pooling), not one pit.")
    neighbour_max_px: float = Field(40.0, gt=0, description="Only boxes whose longer side is at most this "
                                    "(working pixels) are searched beside (a pit's size, not a smear's).")
    neighbour_window: float = Field(1.5, ge=1.0, le=4.0, description="The search window: the box grown "
                                    "about its centre by this factor.")
    neighbour_strength: float = Field(1.5, gt=0, description="A spot needs this many times the frame's "
                                      "0.999 quantile of the dark-spot response (its own units).")
    neighbour_sigmas_px: tuple[float, ...] = Field((1.5, 2.5, 4.0), min_length=1, description="Dark-spot "
                                                   "scales (Gaussian sigma, frame pixels).")
    smooth_cells: float = Field(1.0, ge=0, description="Gaussian smoothing of each distance map "
                                "(in patches).")
    border_px: int = Field(12, ge=0, description="Working pixels at the border that are not judged.")
    seed: int = Field(0, description="Seed of the bank's random subsampling (reproducible fits).")
    boxes: BoxParams = Field(default_factory=_texture_boxes, description="From the anomaly map to boxes "
                             "(threshold in map units; areas, margins and sizes in working pixels; "
                             "merge_distance_px: the smallest distance between two peaks).")

    @model_validator(mode="after")
    def _distinct_explainers(self) -> TextureConfig:
        if len(set(self.explainers)) != len(self.explainers):
            raise ValueError(f"regions.explainers: each at most once, got {list(self.explainers)}")
        return self
