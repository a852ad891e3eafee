import numpy as np
import pytest

from cam_core import agreement as A


def _blob(cx, cy, shape=(40, 60), sigma=6.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_map_correlation_on_constructed_maps():
    a = _blob(20, 20)
    assert A.map_correlation(a, a) == 1.0
    assert A.map_correlation(a, 0.5 * a + 0.1) == pytest.approx(1.0)  # same map, other scale
    assert A.map_correlation(a, 1.0 - a) == pytest.approx(-1.0)
    assert -0.5 < A.map_correlation(a, _blob(45, 25)) < 0.2  # elsewhere: neither flag
    blank = np.zeros_like(a)
    assert A.map_correlation(blank, blank) == 1.0
    assert A.map_correlation(a, blank) is None  # undefined, not "unrelated"
    with pytest.raises(ValueError, match=r"differ in shape: \(40, 60\) and \(4, 4\)"):
        A.map_correlation(a, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        A.map_correlation(a, np.full_like(a, np.nan))


def test_related_maps_flags_identical_and_inverted_pairs():
    rng = np.random.default_rng(0)
    a = _blob(20, 20)
    maps = {
        "gradcam": a,
        "hirescam": np.clip(a + rng.normal(0, 0.002, a.shape), 0, 1),  # numerically the same
        "xgradcam": _blob(24, 20),  # similar but not the same map
        "eigencam": 1.0 - a,  # sign flipped
        "layercam": _blob(50, 10),
    }
    found = A.related_maps(maps)
    assert [(r.first, r.second, r.kind) for r in found] == [
        ("gradcam", "hirescam", "identical"),
        ("gradcam", "eigencam", "inverted"),
        ("hirescam", "eigencam", "inverted"),
    ]
    assert 0.7 < A.map_correlation(a, maps["xgradcam"]) < 0.99
    assert found[0].describe() == "Grad-CAM and HiResCAM give identical maps (r = 1.00)"
    assert found[1].describe().startswith("Grad-CAM and EigenCAM give sign-inverted maps (r = -1")
    with pytest.raises(ValueError, match="inverted < identical"):
        A.related_maps(maps, identical=0.5, inverted=0.6)


def test_maps_that_differ_slightly_are_nearly_identical_not_identical():
    """QA walk: "identical maps (r = 0.99)" beside box IoUs 0.76 and 0.55. A correlation of
    0.99 is "nearly identical"; "identical" only when the maps really are the same."""
    a = _blob(20, 20)
    b = 0.9 * a + 0.1 * _blob(26, 22)  # a slightly shifted mass: r in [0.99, 0.9999)
    r = A.map_correlation(a, b)
    assert A.IDENTICAL_R <= r < A.SAME_R
    (found,) = A.related_maps({"gradcam": a, "hirescam": b})
    assert found.kind == "nearly identical"
    assert found.describe() == f"Grad-CAM and HiResCAM give nearly identical maps (r = {r:.2f})"
    (same,) = A.related_maps({"gradcam": a, "hirescam": a + 5e-5})  # equal to 1e-4
    assert same.kind == "identical" and "give identical maps" in same.describe()


def test_best_methods_rank_on_box_iou_when_the_rest_tie():
    """QA walk: a method was starred with the lowest box IoU; box IoU is a shown figure and
    breaks ties, and the ranking is said in the captions' names."""
    scores = {
        "gradcam": {"pointing": True, "energy": 0.6, "iou": 0.3, "box_iou": 0.55},
        "hirescam": {"pointing": True, "energy": 0.6, "iou": 0.3, "box_iou": 0.76},
    }
    assert A.best_methods(scores) == ("hirescam",)
    assert A.ranking_text() == "pointing, then energy, then IoU, then box IoU"


def test_best_methods_rank_pointing_then_energy_then_iou():
    scores = {
        "gradcam": {"pointing": True, "energy": 0.6, "iou": 0.3},
        "hirescam": {"pointing": True, "energy": 0.6, "iou": 0.5},
        "eigencam": {"pointing": False, "energy": 0.9, "iou": 0.9},  # misses: not best
    }
    assert A.best_methods(scores) == ("hirescam",)
    assert A.best_methods(scores, keys=("energy",)) == ("eigencam",)
    scores["xgradcam"] = dict(scores["hirescam"])
    assert A.best_methods(scores) == ("hirescam", "xgradcam")  # ties kept, in order
    unscored = {"gradcam": {"pointing": None, "energy": None, "iou": None}}
    assert A.best_methods(unscored) == ()
    assert A.best_methods({}) == ()
    with pytest.raises(ValueError, match="keys is empty"):
        A.best_methods(scores, keys=())
