"""Tests for cam_core.metrics: hand-computed cases, accumulators, baselines, properties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cam_core import data as cdata
from cam_core import metrics as M
from cam_core.data import Box, rescale_boxes
from cam_core.metrics import (
    CLASSIC_POINTING_TOLERANCE,
    MaxBoxAccV2,
    PxAP,
    best_box_iou,
    box_iou,
    box_mask,
    cam_to_boxes,
    centre_point_map,
    centred_gaussian_map,
    energy_in_boxes,
    energy_ratio,
    localization_scores,
    mask_iou,
    pixel_iou,
    pointed_pixel,
    pointing_game,
    uniform_map,
)


def B(x0: float, y0: float, x1: float, y1: float, cls: str = "c") -> Box:
    return Box(cls, x0, y0, x1, y1)


def voc(xmin: int, ymin: int, xmax: int, ymax: int) -> Box:
    """A box from 1-based inclusive VOC coordinates, by the documented rule."""
    return B(xmin - 1, ymin - 1, xmax, ymax)


def peak_map(shape: tuple[int, int], r: int, c: int) -> np.ndarray:
    cam = np.zeros(shape, dtype=np.float32)
    cam[r, c] = 1.0
    return cam


# ------------------------------------------------------------------------------- box_mask


def test_box_mask_integer_box() -> None:
    m = box_mask([B(1, 0, 3, 2)], (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[0:2, 1:3] = True
    assert m.dtype == bool
    np.testing.assert_array_equal(m, expected)


def test_box_mask_pixel_centre_rule_for_fractional_boxes() -> None:
    # centres 0.5 and 1.5 lie in [0.4, 1.6); neither lies in [0.6, 1.4).
    np.testing.assert_array_equal(box_mask([B(0.4, 0, 1.6, 1)], (1, 4)), [[1, 1, 0, 0]])
    assert not box_mask([B(0.6, 0, 1.4, 1)], (1, 4)).any()
    # the half-open end: centre 1.5 is not inside [0, 1.5)
    np.testing.assert_array_equal(box_mask([B(0, 0, 1.5, 1)], (1, 4)), [[1, 0, 0, 0]])
    np.testing.assert_array_equal(box_mask([B(0.5, 0, 1.5, 1)], (1, 4)), [[1, 0, 0, 0]])


def test_box_mask_voc_edges() -> None:
    # VOC xmin=1..xmax=200 covers all 200 columns; xmin == xmax is one pixel wide.
    assert box_mask([voc(1, 1, 200, 200)], (200, 200)).all()
    single = box_mask([voc(5, 3, 5, 3)], (10, 10))
    assert np.argwhere(single).tolist() == [[2, 4]]
    last = box_mask([voc(200, 200, 200, 200)], (200, 200))
    assert np.argwhere(last).tolist() == [[199, 199]]


def test_box_mask_union_clipping_and_degenerate() -> None:
    m = box_mask([B(-5, -5, 2, 2), B(1, 1, 3, 3), B(10, 10, 12, 12), B(3, 0, 3, 4)], (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[0:2, 0:2] = True
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(m, expected)
    assert not box_mask([], (3, 5)).any() and box_mask([], (3, 5)).shape == (3, 5)


def test_box_mask_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"shape must be \(height, width\).*\(0, 4\)"):
        box_mask([], (0, 4))
    with pytest.raises(ValueError, match="non-finite coordinates"):
        box_mask([B(0, 0, math.nan, 2)], (4, 4))


# ------------------------------------------------------------------------------- pointing


def test_pointing_hit_miss_and_not_scoreable() -> None:
    cam = peak_map((4, 4), 1, 2)
    assert pointing_game(cam, [B(2, 1, 3, 2)]) is True
    assert pointing_game(cam, [B(0, 0, 2, 4), B(3, 0, 4, 4)]) is False
    assert pointing_game(cam, []) is None


def test_pointing_ties_first_max_row_major_and_constant_map_centre() -> None:
    cam = np.zeros((4, 4), np.float32)
    cam[2, 0] = cam[0, 3] = 0.7
    assert pointed_pixel(cam) == (0, 3)
    assert pointing_game(cam, [B(3, 0, 4, 1)]) is True
    assert pointing_game(cam, [B(0, 2, 1, 3)]) is False
    assert pointed_pixel(np.full((4, 6), 0.3)) == (2, 3)
    assert pointed_pixel(np.zeros((5, 5))) == (2, 2)


def test_pointing_tolerance_is_euclidean_distance_from_pixel_centre() -> None:
    box = [B(0, 0, 2, 2)]
    right = peak_map((10, 10), 0, 5)  # centre (5.5, 0.5): 3.5 px right of x1 = 2
    assert pointing_game(right, box) is False
    assert pointing_game(right, box, tolerance=3.5) is True
    assert pointing_game(right, box, tolerance=3.49) is False
    diag = peak_map((10, 10), 5, 5)  # centre (5.5, 5.5): sqrt(3.5^2 + 3.5^2) = 4.9497
    assert pointing_game(diag, box, tolerance=4.95) is True
    assert pointing_game(diag, box, tolerance=4.94) is False
    assert CLASSIC_POINTING_TOLERANCE == 15.0
    with pytest.raises(ValueError, match=r"tolerance must be .* got -1"):
        pointing_game(diag, box, tolerance=-1)


# ------------------------------------------------------------------------------- energy


def test_energy_hand_computed() -> None:
    cam = np.arange(16, dtype=np.float32).reshape(4, 4) / 15
    box = [B(0, 0, 2, 2)]  # values 0, 1, 4, 5 of a total of 120
    assert energy_in_boxes(cam, box) == pytest.approx(10 / 120)
    assert energy_ratio(cam, box) == pytest.approx((10 / 120) / (4 / 16))
    assert energy_in_boxes(cam, []) is None and energy_ratio(cam, []) is None


def test_energy_whole_image_box_is_one_and_zero_map_is_uniform() -> None:
    rng = np.random.default_rng(0)
    cam = rng.random((10, 10)).astype(np.float32)
    assert energy_in_boxes(cam, [B(0, 0, 10, 10)]) == pytest.approx(1.0)
    assert energy_ratio(cam, [B(0, 0, 10, 10)]) == pytest.approx(1.0)
    zero = np.zeros((4, 4), np.float32)
    assert energy_in_boxes(zero, [B(0, 0, 2, 2)]) == pytest.approx(0.25)
    assert energy_ratio(zero, [B(0, 0, 2, 2)]) == pytest.approx(1.0)
    # a box outside the image: no energy, and no area share to compare with
    assert energy_in_boxes(cam, [B(20, 20, 30, 30)]) == 0.0
    assert energy_ratio(cam, [B(20, 20, 30, 30)]) is None


def test_energy_rejects_negative_maps() -> None:
    cam = np.zeros((4, 4), np.float32)
    cam[0, 0] = -0.5
    with pytest.raises(ValueError, match=r"non-negative, got min -0\.5"):
        energy_in_boxes(cam, [B(0, 0, 2, 2)])


# ------------------------------------------------------------------------------- IoU


def test_mask_iou_hand_computed() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, 0:2] = True
    b[0, 1:4] = True
    assert mask_iou(a, b) == pytest.approx(1 / 4)
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    assert mask_iou(a, np.zeros((4, 4), bool)) == 0.0
    with pytest.raises(ValueError, match=r"masks differ in shape: \(4, 4\) vs \(2, 2\)"):
        mask_iou(a, np.zeros((2, 2), bool))


def test_pixel_iou_hand_computed() -> None:
    cam = np.zeros((4, 4), np.float32)
    cam[0:2, 0:2] = 1.0
    cam[0, 2] = 0.6
    box = [B(0, 0, 2, 2)]
    assert pixel_iou(cam, box) == pytest.approx(4 / 5)  # 0.6 >= 0.5 joins the box's 4 pixels
    assert pixel_iou(cam, box, tau=0.7) == pytest.approx(1.0)
    assert pixel_iou(cam, []) is None
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\], got 1.5"):
        pixel_iou(cam, box, tau=1.5)


def test_box_iou_hand_computed() -> None:
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2, 0.9)) == 1.0  # a trailing score is ignored
    assert box_iou((0, 0, 2, 2), (2, 0, 4, 2)) == 0.0  # touching edges share no area
    assert box_iou((1, 1, 1, 1), (1, 1, 1, 1)) == 0.0  # degenerate


def test_best_box_iou() -> None:
    gt = [B(0, 0, 2, 2), B(5, 5, 9, 9)]
    preds = [(0, 0, 4, 4, 1.0), (5, 5, 9, 8, 0.5)]
    assert best_box_iou(preds, gt) == pytest.approx(12 / 16)
    assert best_box_iou([], gt) == 0.0
    assert best_box_iou(preds, []) == 0.0


# ------------------------------------------------------------------------------- cam_to_boxes


def two_blob_map() -> np.ndarray:
    cam = np.zeros((10, 10), np.float32)
    cam[1:3, 1:4] = 1.0  # 6 px
    cam[6:9, 8:10] = 0.6  # 6 px, touching the right border
    cam[9, 0] = 0.2
    return cam


def test_cam_to_boxes_fraction_of_max() -> None:
    boxes = cam_to_boxes(two_blob_map(), 0.5)
    assert boxes == [(1.0, 1.0, 4.0, 3.0, 1.0), (8.0, 6.0, 10.0, 9.0, pytest.approx(0.6))]
    low = cam_to_boxes(two_blob_map(), 0.1)
    assert len(low) == 3 and low[-1] == (0.0, 9.0, 1.0, 10.0, pytest.approx(0.2))
    assert len(cam_to_boxes(two_blob_map(), 0.1, min_area=2)) == 2
    assert cam_to_boxes(np.zeros((5, 5)), 0.5) == []


def test_cam_to_boxes_connectivity_and_score() -> None:
    cam = np.zeros((5, 5), np.float32)
    cam[0, 0], cam[1, 1] = 0.8, 1.0  # diagonal neighbours: one 8-connected component
    assert cam_to_boxes(cam, 0.5) == [(0.0, 0.0, 2.0, 2.0, pytest.approx(0.9))]
    assert cam_to_boxes(cam, 0.5, score="max") == [(0.0, 0.0, 2.0, 2.0, 1.0)]


def test_cam_to_boxes_otsu() -> None:
    cam = two_blob_map()
    cam[9, 0] = 0.0
    got = [b[:4] for b in cam_to_boxes(cam, "otsu")]
    assert got == [(1.0, 1.0, 4.0, 3.0), (8.0, 6.0, 10.0, 9.0)]


def test_cam_to_boxes_rejects_bad_arguments() -> None:
    cam = two_blob_map()
    with pytest.raises(ValueError, match="fraction in \\[0, 1\\] or 'otsu', got 'mean'"):
        cam_to_boxes(cam, "mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1.5"):
        cam_to_boxes(cam, 1.5)
    with pytest.raises(ValueError, match="min_area must be >= 1 pixel, got 0"):
        cam_to_boxes(cam, min_area=0)
    with pytest.raises(ValueError, match="score must be 'mean' or 'max', got 'sum'"):
        cam_to_boxes(cam, score="sum")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- bundle, NaN


def test_localization_scores_matches_single_functions() -> None:
    cam = two_blob_map()
    gt = [B(1, 1, 4, 4)]
    s = localization_scores(cam, gt)
    assert set(s) == {"pointing", "pointing_tol", "energy", "energy_ratio", "iou", "box_iou"}
    assert s["pointing"] is True and s["pointing_tol"] is True
    assert s["energy"] == pytest.approx(energy_in_boxes(cam, gt))
    assert s["energy_ratio"] == pytest.approx(energy_ratio(cam, gt))
    assert s["iou"] == pytest.approx(pixel_iou(cam, gt))
    assert s["box_iou"] == pytest.approx(6 / 9)
    # the peak is pixel (1, 1), centre (1.5, 1.5): 3.5 px left of x0 = 5
    far = localization_scores(cam, [B(5, 0, 7, 2)], tolerance=3.5)
    assert far["pointing"] is False and far["pointing_tol"] is True
    assert localization_scores(cam, [B(5, 0, 7, 2)], tolerance=3.4)["pointing_tol"] is False
    assert all(v is None for v in localization_scores(cam, []).values())


@pytest.mark.parametrize(
    "call",
    [
        lambda c: pointing_game(c, [B(0, 0, 1, 1)]),
        lambda c: energy_in_boxes(c, [B(0, 0, 1, 1)]),
        lambda c: energy_ratio(c, [B(0, 0, 1, 1)]),
        lambda c: pixel_iou(c, [B(0, 0, 1, 1)]),
        lambda c: cam_to_boxes(c),
        lambda c: localization_scores(c, [B(0, 0, 1, 1)]),
        lambda c: MaxBoxAccV2().update(c, [B(0, 0, 1, 1)]),
        lambda c: PxAP().update(c, [B(0, 0, 1, 1)]),
        pointed_pixel,
    ],
)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_maps_are_refused(call, bad: float) -> None:
    cam = np.zeros((4, 4), np.float32)
    cam[1, 2] = bad
    with pytest.raises(ValueError, match=r"map contains NaN or inf \(1 of 16 values\)"):
        call(cam)


def test_maps_must_be_2d() -> None:
    with pytest.raises(ValueError, match=r"2-D \(H, W\) array, got shape \(1, 4, 4\)"):
        pointing_game(np.zeros((1, 4, 4)), [B(0, 0, 1, 1)])


# ------------------------------------------------------------------------------- MaxBoxAccV2


def test_maxboxacc_perfect_box_shaped_map_scores_one() -> None:
    gt = [B(10, 10, 30, 25), B(35, 35, 45, 48)]
    acc = MaxBoxAccV2()
    acc.update(box_mask(gt, (50, 50)).astype(np.float32), gt)
    out = acc.compute()
    assert out["maxboxacc_v2"] == 1.0
    assert out["maxboxacc@0.3"] == out["maxboxacc@0.5"] == out["maxboxacc@0.7"] == 1.0
    assert out["best_threshold@0.5"] == pytest.approx(0.01)  # t = 0 keeps the whole image
    assert out["n"] == 1


def test_maxboxacc_far_away_map_scores_zero_and_counts_average() -> None:
    gt = [B(0, 0, 8, 8)]
    far = np.zeros((50, 50), np.float32)
    far[40:50, 40:50] = 1.0
    acc = MaxBoxAccV2()
    acc.update(far, gt)
    assert acc.compute()["maxboxacc_v2"] == 0.0
    acc.update(box_mask(gt, (50, 50)).astype(np.float32), gt)
    acc.update(far, [])  # not scoreable: skipped
    out = acc.compute()
    assert out["maxboxacc_v2"] == pytest.approx(0.5) and out["n"] == 2 and acc.skipped == 1


def test_maxboxacc_best_threshold_per_delta() -> None:
    # box 5x5 at full strength inside a 7x7 halo at 0.4: halo IoU 25/49 = 0.51.
    cam = np.zeros((20, 20), np.float32)
    cam[4:11, 4:11] = 0.4
    cam[5:10, 5:10] = 1.0
    gt = [B(5, 5, 10, 10)]
    acc = MaxBoxAccV2()
    acc.update(cam, gt)
    best = acc.best_ious(cam, gt)
    assert best[0] == pytest.approx(25 / 400)  # t = 0: the whole image
    assert best[40] == pytest.approx(25 / 49) and best[41] == 1.0
    out = acc.compute()
    assert out["best_threshold@0.3"] == pytest.approx(0.01)
    assert out["best_threshold@0.5"] == pytest.approx(0.01)
    assert out["best_threshold@0.7"] == pytest.approx(0.41)


def test_maxboxacc_uses_every_contour_not_only_the_largest() -> None:
    cam = np.zeros((40, 40), np.float32)
    cam[20:40, 20:40] = 1.0  # large blob, no GT there
    cam[2:6, 2:6] = 1.0  # small blob on the GT box
    acc = MaxBoxAccV2()
    acc.update(cam, [B(2, 2, 6, 6)])
    assert acc.compute()["maxboxacc@0.7"] == 1.0


def test_maxboxacc_errors() -> None:
    with pytest.raises(ValueError, match=r"no scored samples \(skipped 1\)"):
        acc = MaxBoxAccV2()
        acc.update(np.ones((4, 4)), [])
        acc.compute()
    with pytest.raises(ValueError, match=r"deltas must be IoU levels in \(0, 1\]"):
        MaxBoxAccV2(deltas=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"thresholds must be fractions in \[0, 1\]"):
        MaxBoxAccV2(thresholds=[0.5, 2.0])


# ------------------------------------------------------------------------------- PxAP


def test_pxap_hand_computed() -> None:
    # ranking 0.9 (pos), 0.6 (neg), 0.3 (pos), 0.1 (neg): AP = 1 * 1/2 + 2/3 * 1/2
    cam = np.array([[0.9, 0.6], [0.3, 0.1]], np.float32)
    ap = PxAP()
    ap.update(cam, [B(0, 0, 1, 2)])
    out = ap.compute()
    assert out["pxap"] == pytest.approx(5 / 6)
    assert out["positive_fraction"] == 0.5 and out["n"] == 1
    thresholds, precision, recall = ap.curve()
    assert thresholds[0] == pytest.approx(0.999) and recall[-1] == 1.0
    assert precision[-1] == pytest.approx(0.5)


def test_pxap_perfect_random_and_constant_maps() -> None:
    rng = np.random.default_rng(1)
    gt = [B(0, 0, 20, 20)]  # a quarter of a 40x40 image
    perfect, random, constant = PxAP(), PxAP(), PxAP()
    for _ in range(5):
        perfect.update(box_mask(gt, (40, 40)).astype(np.float32), gt)
        random.update(rng.random((40, 40)).astype(np.float32), gt)
        constant.update(uniform_map((40, 40)), gt)
    assert perfect.compute()["pxap"] == pytest.approx(1.0)
    assert random.compute()["pxap"] == pytest.approx(0.25, abs=0.03)
    assert constant.compute()["pxap"] == pytest.approx(0.25)


def test_pxap_errors() -> None:
    ap = PxAP()
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got range \[0, 2\]"):
        ap.update(np.array([[0.0, 2.0]]), [B(0, 0, 1, 1)])
    ap.update(np.ones((2, 2)), [])
    with pytest.raises(ValueError, match=r"no positive pixels \(scored 0, skipped 1\)"):
        ap.compute()


# ------------------------------------------------------------------------------- baselines


def test_baseline_maps() -> None:
    point, gauss, flat = (
        centre_point_map((4, 6)),
        centred_gaussian_map((4, 6)),
        uniform_map((4, 6)),
    )
    for m in (point, gauss, flat):
        assert m.dtype == np.float32 and m.shape == (4, 6)
        assert pointed_pixel(m) == (2, 3)
    assert point.sum() == 1.0 and point[2, 3] == 1.0
    assert gauss.max() == 1.0 and gauss[2, 3] == 1.0
    # one sigma (0.25 * 6 = 1.5 px) would be exp(-1/2); two pixels right is 2/1.5 sigma
    assert gauss[2, 5] == pytest.approx(math.exp(-0.5 * (2 / 1.5) ** 2))
    gt = [B(0, 0, 3, 2)]
    assert energy_in_boxes(flat, gt) == pytest.approx(6 / 24)
    assert energy_ratio(flat, gt) == pytest.approx(1.0)
    assert pointing_game(point, gt) is False
    assert pointing_game(point, [B(3, 2, 4, 3)]) is True
    with pytest.raises(ValueError, match="sigma_frac must be a finite number > 0, got 0"):
        centred_gaussian_map((4, 4), sigma_frac=0)


def _neu_det() -> Path:
    finder = getattr(cdata, "find_neu_det", None)
    root = finder() if finder else None
    return Path(root) if root else Path(__file__).resolve().parents[1].parent / "shared" / "NEU-DET"


def test_centre_and_uniform_baselines_on_neu_det() -> None:
    """Trivial baselines on the real annotations (union of each image's boxes).

    NOTES-NEU-DET.md quotes 53.5 % strict pointing and 0.39 uniform energy; those figures are
    reproduced exactly with boxes starting at ``xmin`` instead of ``xmin - 1`` (one row and column
    short). With the documented convention (``x0 = xmin - 1``) they are 54.6 % and 0.403.
    """
    root = _neu_det() / "ANNOTATIONS"
    if not root.is_dir():
        pytest.skip(f"NEU-DET annotations not found at {root}")
    point, flat = centre_point_map((200, 200)), uniform_map((200, 200))
    anns = [cdata.parse_voc(xml) for xml in sorted(root.glob("*.xml"))]
    assert len(anns) == 1500
    strict = [pointing_game(point, a.boxes) for a in anns]
    tol = [pointing_game(point, a.boxes, tolerance=CLASSIC_POINTING_TOLERANCE) for a in anns]
    energy = [energy_in_boxes(flat, a.boxes) for a in anns]
    assert np.mean(strict) == pytest.approx(0.546, abs=0.001)
    assert np.mean(tol) == pytest.approx(0.73, abs=0.001)
    assert np.mean(energy) == pytest.approx(0.403, abs=0.001)
    short = [tuple(B(b.x0 + 1, b.y0 + 1, b.x1, b.y1) for b in a.boxes) for a in anns]
    assert np.mean([pointing_game(point, b) for b in short]) == pytest.approx(0.535, abs=0.001)
    assert np.mean([energy_in_boxes(flat, b) for b in short]) == pytest.approx(0.394, abs=0.001)


# ------------------------------------------------------------------------------- properties

maps = arrays(
    np.float32,
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    elements=st.floats(0, 1, width=32),
)
coord = st.floats(-4, 16, allow_nan=False)
boxes_st = st.lists(st.builds(B, coord, coord, coord, coord), min_size=1, max_size=4)
masks = arrays(bool, st.tuples(st.integers(1, 8), st.integers(1, 8)))
PROPS = settings(max_examples=60, deadline=None)


@PROPS
@given(maps, boxes_st)
def test_energy_is_a_share(cam: np.ndarray, boxes: list[Box]) -> None:
    e = energy_in_boxes(cam, boxes)
    assert e is not None and 0.0 <= e <= 1.0


@PROPS
@given(maps, boxes_st)
def test_pointing_hit_iff_pointed_pixel_in_a_box(cam: np.ndarray, boxes: list[Box]) -> None:
    h, w = cam.shape
    if cam.max() == cam.min():
        r, c = h // 2, w // 2
    else:
        r, c = np.unravel_index(np.argmax(cam), cam.shape)
    assert pointing_game(cam, boxes) == bool(box_mask(boxes, cam.shape)[r, c])


@PROPS
@given(masks, st.data())
def test_mask_iou_symmetric_and_identity(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(arrays(bool, a.shape))
    assert mask_iou(a, b) == mask_iou(b, a)
    assert 0.0 <= mask_iou(a, b) <= 1.0
    assert mask_iou(a, a) == 1.0


@PROPS
@given(boxes_st, boxes_st)
def test_box_iou_symmetric_and_bounded(a: list[Box], b: list[Box]) -> None:
    xa = (a[0].x0, a[0].y0, a[0].x1, a[0].y1)
    xb = (b[0].x0, b[0].y0, b[0].x1, b[0].y1)
    assert box_iou(xa, xb) == pytest.approx(box_iou(xb, xa))
    assert 0.0 <= box_iou(xa, xb) <= 1.0 + 1e-12


int_coord = st.integers(-2, 12)
int_boxes = st.lists(st.builds(B, int_coord, int_coord, int_coord, int_coord), max_size=4)


@PROPS
@given(int_boxes, st.integers(1, 10), st.integers(1, 10), st.integers(1, 3))
def test_rescale_round_trip_and_integer_upscale(boxes: list[Box], h: int, w: int, k: int) -> None:
    up = rescale_boxes(tuple(boxes), (h, w), (k * h, k * w))
    back = rescale_boxes(up, (k * h, k * w), (h, w))
    for b0, b1 in zip(boxes, back, strict=True):
        assert (b1.x0, b1.y0, b1.x1, b1.y1) == pytest.approx((b0.x0, b0.y0, b0.x1, b0.y1))
    # integer boxes scaled by an integer factor cover exactly the upsampled pixels
    expected = np.kron(box_mask(boxes, (h, w)), np.ones((k, k), bool))
    np.testing.assert_array_equal(box_mask(up, (k * h, k * w)), expected)


@PROPS
@given(maps, st.one_of(st.floats(0, 1), st.just("otsu")))
def test_cam_to_boxes_stay_inside_the_image(cam: np.ndarray, threshold: float | str) -> None:
    h, w = cam.shape
    for x0, y0, x1, y1, s in cam_to_boxes(cam, threshold):  # type: ignore[arg-type]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert 0.0 <= s <= cam.max()


def test_map_figures_boxes_and_labels():
    cam = np.zeros((20, 20), np.float32)
    cam[5:10, 5:10] = 1.0
    gt = [Box("crazing", 5, 5, 10, 10)]
    fig = M.map_figures(cam, gt, threshold=0.5)
    assert fig.cam_boxes == ((5.0, 5.0, 10.0, 10.0, 1.0),)
    assert fig.labels() == ["IoU 1.00"]
    assert fig.scores["pointing"] is True and fig.scores["box_iou"] == 1.0
    bare = M.map_figures(cam, [], threshold="otsu")
    assert bare.labels() == ["map 1.00"] and bare.scores["pointing"] is None
    off = [Box("crazing", 10, 5, 15, 10)]  # beside the hot square: no overlap
    assert M.map_figures(cam, off, threshold="otsu").scores["box_iou"] == 0.0
    with pytest.raises(ValueError, match="tolerance must be a finite number"):
        M.map_figures(cam, gt, tolerance=-1)
