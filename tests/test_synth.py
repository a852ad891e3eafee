"""Tests for cam_core.synth: determinism, box sanity, the cue lives in the boxes, VOC round trip."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from lxml import etree

from cam_core import synth
from cam_core.data import NEU_CLASSES, Box, load_dataset

SIZE = 200


def _union_mask(boxes: tuple[Box, ...], size: int = SIZE) -> np.ndarray:
    """(size, size) bool: pixels whose centre lies in any box (boxes are integer-valued here)."""
    mask = np.zeros((size, size), bool)
    for b in boxes:
        mask[int(b.y0) : int(b.y1), int(b.x0) : int(b.x1)] = True
    return mask


def _background_estimate(image: np.ndarray) -> np.ndarray:
    """A defect-blind background guess from the image alone: column medians (rolling streaks)
    plus row medians of what is left (gradients)."""
    f = image.astype(np.float32)
    bg = np.median(f, axis=0, keepdims=True)
    return bg + np.median(f - bg, axis=1, keepdims=True)


@pytest.mark.parametrize("cls", NEU_CLASSES)
def test_generate_is_deterministic_for_a_seed(cls):
    a_img, a_boxes = synth.generate(cls, np.random.default_rng(11))
    b_img, b_boxes = synth.generate(cls, np.random.default_rng(11))
    c_img, _ = synth.generate(cls, np.random.default_rng(12))
    np.testing.assert_array_equal(a_img, b_img)
    assert a_boxes == b_boxes
    assert not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("cls", NEU_CLASSES)
def test_images_and_boxes_are_plausible(cls):
    n_boxes = []
    for seed in range(25):
        image, boxes = synth.generate(cls, np.random.default_rng(seed))
        assert image.shape == (SIZE, SIZE)
        assert image.dtype == np.uint8
        assert image.std() > 3  # a textured background, not a flat fill
        assert 1 <= len(boxes) <= 3
        n_boxes.append(len(boxes))
        for b in boxes:
            assert b.cls == cls
            assert 0 <= b.x0 < b.x1 <= SIZE and 0 <= b.y0 < b.y1 <= SIZE
            assert all(float(v).is_integer() for v in (b.x0, b.y0, b.x1, b.y1))
            assert min(b.x1 - b.x0, b.y1 - b.y0) >= synth.MIN_SIDE
            assert synth.MIN_AREA_FRAC <= b.area / SIZE**2 <= synth.MAX_AREA_FRAC
    assert len(set(n_boxes)) > 1  # the number of defects varies


def test_boxes_land_anywhere_not_only_the_centre():
    centres = [
        ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2)
        for cls in NEU_CLASSES
        for seed in range(15)
        for b in synth.generate(cls, np.random.default_rng(seed))[1]
    ]
    xs, ys = np.array(centres).T
    for v in (xs, ys):
        assert v.min() < 0.2 * SIZE and v.max() > 0.8 * SIZE
    touching = [
        b
        for cls in NEU_CLASSES
        for seed in range(15)
        for b in synth.generate(cls, np.random.default_rng(seed))[1]
        if b.truncated
    ]
    assert touching
    assert all(b.x0 == 0 or b.y0 == 0 or b.x1 == SIZE or b.y1 == SIZE for b in touching)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_background_carries_no_class_information(seed):
    """Same generator state → the same pixels outside the boxes, whatever the class."""
    results = [synth.generate(cls, np.random.default_rng(seed)) for cls in NEU_CLASSES]
    outside = ~np.logical_or.reduce([_union_mask(boxes) for _, boxes in results])
    assert outside.mean() > 0.05
    reference = results[0][0][outside]
    for image, _ in results[1:]:
        np.testing.assert_array_equal(image[outside], reference)


@pytest.mark.parametrize("cls", NEU_CLASSES)
def test_defect_changes_the_image_inside_its_boxes(cls):
    """From the image alone: pixels stray from a streak-aware background more inside the boxes."""
    inside_dev, outside_dev = [], []
    for seed in range(12):
        image, boxes = synth.generate(cls, np.random.default_rng(seed))
        mask = _union_mask(boxes)
        dev = np.abs(image.astype(np.float32) - _background_estimate(image))
        inside_dev.append(dev[mask].mean())
        if (~mask).any():
            outside_dev.append(dev[~mask].mean())
    assert np.mean(inside_dev) > 1.4 * np.mean(outside_dev), (inside_dev, outside_dev)


@pytest.mark.parametrize("cls", NEU_CLASSES)
def test_every_box_holds_a_visible_defect(cls):
    """Each box differs from the same background drawn with another class's defects elsewhere."""
    other = "inclusion" if cls != "inclusion" else "scratches"
    checked = 0
    for seed in range(10):
        image, boxes = synth.generate(cls, np.random.default_rng(seed))
        image_o, boxes_o = synth.generate(other, np.random.default_rng(seed))
        free = ~_union_mask(boxes_o)
        for b in boxes:
            own = _union_mask((b,)) & free
            if own.sum() < 0.5 * b.area:
                continue
            checked += 1
            diff = np.abs(image.astype(np.int16) - image_o.astype(np.int16))[own]
            assert (diff > 8).mean() > 0.04, (cls, seed, b)
    assert checked >= 15


def test_other_sizes_scale():
    image, boxes = synth.generate("scratches", np.random.default_rng(0), size=96)
    assert image.shape == (96, 96)
    for b in boxes:
        assert 0 <= b.x0 < b.x1 <= 96 and 0 <= b.y0 < b.y1 <= 96
        assert synth.MIN_AREA_FRAC <= b.area / 96**2 <= synth.MAX_AREA_FRAC


def test_bad_arguments_are_refused_with_the_value():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"unknown defect class 'rust'.*crazing.*scratches"):
        synth.generate("rust", rng)
    with pytest.raises(ValueError, match=r"size must be >= 48 pixels, got 20"):
        synth.generate("crazing", rng, size=20)
    with pytest.raises(ValueError, match=r"n_per_class must be >= 0, got -1"):
        synth.make_sample_set(-1, seed=0)


def test_make_sample_set_stems_order_and_stability():
    two = synth.make_sample_set(2, seed=5)
    assert [stem for stem, _, _ in two] == [
        f"{cls}_synth_{i:04d}" for cls in NEU_CLASSES for i in range(2)
    ]
    for stem, image, boxes in two:
        assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8
        assert {b.cls for b in boxes} == {stem.rsplit("_synth_", 1)[0]}
    one = synth.make_sample_set(1, seed=5)
    np.testing.assert_array_equal(one[0][1], two[0][1])  # image i does not depend on n_per_class
    assert one[1][0] == "inclusion_synth_0000"
    np.testing.assert_array_equal(one[1][1], two[2][1])
    other_seed = synth.make_sample_set(1, seed=6)
    assert not np.array_equal(other_seed[0][1], one[0][1])
    assert synth.make_sample_set(0, seed=5) == []


def test_600_images_are_fast():
    start = time.perf_counter()
    synth.make_sample_set(10, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"60 images took {elapsed:.1f} s (budget: 600 in 10 s)"


def _read_voc(path: Path) -> tuple[etree._Element, list[tuple[str, int, int, int, int, int]]]:
    root = etree.parse(str(path)).getroot()
    objs = []
    for obj in root.iter("object"):
        coords = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        objs.append((obj.findtext("name"), *coords, int(obj.findtext("truncated"))))
    return root, objs


def test_voc_folder_round_trip(tmp_path):
    out = synth.write_voc_folder(tmp_path / "synth", n_per_class=2, seed=3)
    assert out == tmp_path / "synth"
    expected = synth.make_sample_set(2, seed=3)
    assert len(list((out / "IMAGES").glob("*.png"))) == len(expected) == 12
    assert len(list((out / "ANNOTATIONS").glob("*.xml"))) == 12
    for stem, image, boxes in expected:
        png = cv2.imread(str(out / "IMAGES" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(png, image)
        root, objs = _read_voc(out / "ANNOTATIONS" / f"{stem}.xml")
        assert root.findtext("filename") == f"{stem}.png"
        assert [root.findtext(f"size/{k}") for k in ("width", "height", "depth")] == [
            "200",
            "200",
            "1",
        ]
        assert len(objs) == len(boxes)
        for (name, xmin, ymin, xmax, ymax, truncated), b in zip(objs, boxes, strict=True):
            assert name == b.cls
            assert 1 <= xmin <= xmax <= 200 and 1 <= ymin <= ymax <= 200
            for got, want in ((xmin - 1, b.x0), (ymin - 1, b.y0), (xmax, b.x1), (ymax, b.y1)):
                assert abs(got - want) <= 1
            assert truncated == int(b.truncated)


def test_voc_xml_rounds_outward_clips_and_escapes():
    boxes = (Box("a<b&\"c'", -3.2, 10.5, 50.2, 250.0), Box("scratches", 0.0, 0.0, 6.0, 200.0))
    root = etree.fromstring(synth.voc_xml("x&y.png", (200, 120), boxes))
    assert root.findtext("filename") == "x&y.png"
    assert root.findtext("size/width") == "120" and root.findtext("size/height") == "200"
    first, second = root.findall("object")
    assert first.findtext("name") == "a<b&\"c'"
    bnd = [int(first.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert bnd == [1, 11, 51, 200]  # floor(x0)+1 and ceil(x1), clipped to the image
    bnd = [int(second.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert bnd == [1, 1, 6, 200]


def test_load_dataset_reads_the_folder(tmp_path):
    out = synth.write_voc_folder(tmp_path, n_per_class=1, seed=8)
    dataset = load_dataset(out)
    assert dataset.layout == "neu-flat"
    assert dataset.errors == ()
    assert dataset.classes == NEU_CLASSES
    by_stem = {s.stem: s for s in dataset.samples}
    for stem, image, boxes in synth.make_sample_set(1, seed=8):
        sample = by_stem[stem]
        assert sample.size == image.shape
        assert sample.labels == (boxes[0].cls,)
        assert len(sample.boxes) == len(boxes)
        for got, want in zip(sample.boxes, boxes, strict=True):
            assert got.cls == want.cls
            assert (got.x0, got.y0, got.x1, got.y1) == (want.x0, want.y0, want.x1, want.y1)


def test_synthetic_folder_is_written_once(tmp_path):
    out = synth.synthetic_folder(1, 5, root=tmp_path)
    assert (out / ".complete").exists() and len(list((out / "IMAGES").iterdir())) == 6
    mtime = (out / ".complete").stat().st_mtime_ns
    assert synth.synthetic_folder(1, 5, root=tmp_path) == out
    assert (out / ".complete").stat().st_mtime_ns == mtime
    assert [s.stem for s in synth.synthetic_samples(1, 5)][:1] == ["crazing_synth_0000"]
