"""cam_core.data: VOC parsing (hostile input included), image decoding, layouts and splits."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cam_core.data import (
    MAX_OBJECTS,
    NEU_CLASSES,
    SPLITS,
    Box,
    DataError,
    Sample,
    annotation_for,
    assign_split,
    file_class,
    find_neu_det,
    load_dataset,
    parse_voc,
    read_image,
    rescale_boxes,
    split_samples,
)
from cam_core.metrics import box_mask

NEU = find_neu_det()
needs_neu = pytest.mark.skipif(
    NEU is None, reason="NEU-DET not found (set NEU_DET_DIR or place it at ../shared/NEU-DET)"
)


# --------------------------------------------------------------------------- helpers


def voc(
    objects: list[dict[str, str]] | str = (),
    *,
    size: tuple[int, int] | None = (200, 200),
    filename: str = "x.jpg",
) -> bytes:
    """A VOC document; ``objects`` are dicts of name/xmin/ymin/xmax/ymax (missing = absent)."""
    if isinstance(objects, str):
        body = objects
    else:
        parts = []
        for o in objects:
            name = f"<name>{o['name']}</name>" if "name" in o else ""
            coords = "".join(
                f"<{k}>{o[k]}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax") if k in o
            )
            bnd = "" if o.get("bndbox") == "none" else f"<bndbox>{coords}</bndbox>"
            flags = f"<truncated>{o.get('truncated', 0)}</truncated><difficult>0</difficult>"
            parts.append(f"<object>{name}{flags}{bnd}</object>")
        body = "".join(parts)
    size_xml = f"<size><width>{size[1]}</width><height>{size[0]}</height></size>" if size else ""
    return f"<annotation><filename>{filename}</filename>{size_xml}{body}</annotation>".encode()


def box(name: str = "crazing", xmin="11", ymin="21", xmax="50", ymax="60") -> dict[str, str]:
    return {
        "name": name,
        "xmin": str(xmin),
        "ymin": str(ymin),
        "xmax": str(xmax),
        "ymax": str(ymax),
    }


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (incomplete) pixel stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit gray
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# --------------------------------------------------------------------------- shared NEU-DET copy


@pytest.fixture(scope="module")
def neu():
    return load_dataset(NEU)


@needs_neu
def test_neu_counts(neu):
    assert neu.layout == "neu-flat"
    assert len(neu) == 1500
    assert neu.errors == ()
    assert sum(len(s.boxes) for s in neu.samples) == 3493
    assert Counter(s.label for s in neu.samples) == {c: 250 for c in NEU_CLASSES}
    assert neu.classes == NEU_CLASSES
    assert all(s.size == (200, 200) for s in neu.samples)
    assert [w for s in neu.samples for w in s.warnings] == []  # no quirk of this copy warns
    assert len({s.stem for s in neu.samples}) == 1500
    assert all(s.path.stem == s.stem and s.path.is_file() for s in neu.samples)


@needs_neu
def test_neu_filename_tags_without_extension_are_joined_on_stem(neu):
    bare = []
    for xml in sorted((NEU / "ANNOTATIONS").glob("*.xml")):
        ann = parse_voc(xml)
        if ann.filename is not None and "." not in ann.filename:
            bare.append(xml.stem)
    assert len(bare) == 150
    by_stem = {s.stem: s for s in neu.samples}
    assert all(by_stem[stem].boxes for stem in bare)


@needs_neu
def test_neu_boxes_of_another_class_and_coordinates(neu):
    other = [(s.stem, b) for s in neu.samples for b in s.boxes if b.cls != s.label]
    assert len(other) == 134
    assert len({stem for stem, _ in other}) == 92
    s = next(s for s in neu.samples if s.stem == "crazing_104")
    assert s.label == "crazing"
    assert s.labels == ("crazing", "patches")
    # crazing_104.xml: first box is xmin=4 ymin=4 xmax=110 ymax=136; patches box truncated
    assert (s.boxes[0].x0, s.boxes[0].y0, s.boxes[0].x1, s.boxes[0].y1) == (3, 3, 110, 136)
    (patch,) = s.boxes_for("patches")
    assert patch.truncated and patch.y1 == 200
    boxes = [b for s in neu.samples for b in s.boxes]
    assert min(min(b.x0, b.y0) for b in boxes) == 0
    assert max(max(b.x1, b.y1) for b in boxes) == 200
    assert all(b.area >= 1 for b in boxes)
    assert sum(b.truncated for b in boxes) == 1278
    assert sum(b.difficult for b in boxes) == 57


@needs_neu
def test_neu_splits_are_disjoint_complete_stratified_and_stable(neu):
    splits = split_samples(neu.samples)
    assert tuple(splits) == SPLITS
    stems = {k: {s.stem for s in v} for k, v in splits.items()}
    assert sum(len(v) for v in stems.values()) == 1500
    assert set.union(*stems.values()) == {s.stem for s in neu.samples}
    assert not (stems["train"] & stems["val"] or stems["train"] & stems["test"])
    assert not stems["val"] & stems["test"]
    for name, part in splits.items():
        per_class = Counter(s.label for s in part)
        assert set(per_class) == set(NEU_CLASSES)
        for n in per_class.values():
            assert n == 175 if name == "train" else n in (37, 38)
    # deterministic: recomputed, reloaded and reversed input give the same split
    again = split_samples(reversed(load_dataset(NEU).samples))
    assert {k: {s.stem for s in v} for k, v in again.items()} == stems
    assert load_dataset(NEU, split="test").samples == splits["test"]
    # assign_split is the per-sample form of the same rule
    cls_stems = [s.stem for s in neu.samples if s.label == "scratches"]
    for stem in cls_stems[:40]:
        assert stem in stems[assign_split(stem, "scratches", cls_stems)]


@needs_neu
def test_kaggle_layout_copy_gives_same_samples_and_splits(neu, tmp_path):
    root = tmp_path / "kaggle" / "NEU-DET"
    for i, s in enumerate(neu.samples):
        part = root / ("train" if i % 5 else "validation")
        img_dir = part / "images" / s.label
        ann_dir = part / "annotations"
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        (img_dir / s.path.name).symlink_to(s.path)
        (ann_dir / f"{s.stem}.xml").symlink_to(NEU / "ANNOTATIONS" / f"{s.stem}.xml")
    kaggle = load_dataset(tmp_path / "kaggle")  # a folder holding NEU-DET/
    assert kaggle.layout == "kaggle"
    assert kaggle.root == root
    assert kaggle.errors == ()
    assert [(s.stem, s.label, s.boxes, s.size) for s in kaggle.samples] == [
        (s.stem, s.label, s.boxes, s.size) for s in neu.samples
    ]
    for name in SPLITS:
        assert [s.stem for s in load_dataset(root, split=name).samples] == [
            s.stem for s in split_samples(neu.samples)[name]
        ]


@needs_neu
def test_lowercase_flat_layout_and_neu_det_parent(neu, tmp_path):
    root = tmp_path / "small"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    subset = neu.samples[::50]
    for s in subset:
        (root / "images" / s.path.name).symlink_to(s.path)
        (root / "annotations" / f"{s.stem}.xml").symlink_to(NEU / "ANNOTATIONS" / f"{s.stem}.xml")
    small = load_dataset(root)
    assert small.layout == "neu-flat"
    assert [(s.stem, s.boxes) for s in small.samples] == [(s.stem, s.boxes) for s in subset]
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "NEU-DET").symlink_to(NEU)
    assert len(load_dataset(parent)) == 1500


def test_find_neu_det_prefers_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NEU_DET_DIR", str(tmp_path))
    assert find_neu_det() == tmp_path
    monkeypatch.setenv("NEU_DET_DIR", str(tmp_path / "missing"))
    found = find_neu_det()
    assert found is None or found.name == "NEU-DET"


def test_find_neu_det_finds_the_shared_folder_beside_the_repo(monkeypatch):
    """A module move once hid the data behind a skip: the fallback path is checked directly."""
    monkeypatch.delenv("NEU_DET_DIR", raising=False)
    shared = Path(__file__).resolve().parents[2] / "shared" / "NEU-DET"
    assert find_neu_det() == (shared if shared.is_dir() else None)


# --------------------------------------------------------------------------- splits without data


def fake(stem: str, label: str | None) -> Sample:
    return Sample(Path(f"{stem}.png"), stem, label)


def test_split_small_classes_and_unlabelled_by_hash_alone():
    samples = [fake(f"a_{i}", "a") for i in range(20)] + [fake(f"u_{i}", None) for i in range(400)]
    splits = split_samples(samples)
    assert [sum(s.label == "a" for s in splits[k]) for k in SPLITS] == [14, 3, 3]
    # the documented rule, recomputed independently: order a class by sha1(stem), cut 14/3/3
    order = sorted((f"a_{i}" for i in range(20)), key=lambda t: hashlib.sha1(t.encode()).digest())
    expected = {"train": order[:14], "val": order[14:17], "test": order[17:]}
    assert {k: sorted(s.stem for s in v if s.label == "a") for k, v in splits.items()} == {
        k: sorted(v) for k, v in expected.items()
    }
    unl = {k: {s.stem for s in v if s.label is None} for k, v in splits.items()}
    assert 230 < len(unl["train"]) < 330 and len(unl["val"]) > 30 and len(unl["test"]) > 30
    # an unlabelled sample's split does not depend on the others
    for s in samples[20:60]:
        (where,) = [k for k in SPLITS if s.stem in unl[k]]
        alone = split_samples([s])
        assert alone[where] == (s,)
        assert assign_split(s.stem, None) == where


def test_split_argument_errors():
    with pytest.raises(ValueError, match=r"summing to 1, got \(0\.5, 0\.5, 0\.5\)"):
        split_samples([], fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="'b_1' is not among the stems of class 'a'"):
        assign_split("b_1", "a", ["a_1", "a_2"])
    with pytest.raises(ValueError, match=r"unknown split 'validation'; valid: None, train, val"):
        load_dataset(".", split="validation")


def test_file_class():
    assert file_class("rolled-in_scale_12") == "rolled-in_scale"
    assert file_class("pitted_surface_53") == "pitted_surface"
    assert file_class("pitted_surface_53", "patches") == "pitted_surface"
    assert file_class("img_0001", "scratches") == "scratches"
    assert file_class("crazing") is None
    assert file_class("rust_3") is None


# --------------------------------------------------------------------------- Box geometry


def xyxy(b: Box) -> tuple[float, float, float, float]:
    return (b.x0, b.y0, b.x1, b.y1)


def test_box_flipped_mirrors_the_pixels_it_covers():
    # VOC xmin 1..xmax 10 (1-based, inclusive) = pixel columns 0..9 = half-open [0, 10).
    xml = voc([box(xmin=1, ymin=21, xmax=10, ymax=60)], size=(100, 200))  # (height, width)
    (b,) = parse_voc(xml, name="f.xml").boxes
    assert xyxy(b) == (0, 20, 10, 60)
    assert xyxy(b.flipped(width=200)) == (190, 20, 200, 60)  # VOC 191..200: the last 10 columns
    assert xyxy(b.flipped(height=100)) == (0, 40, 10, 80)  # rows 20..59 -> 40..79
    assert xyxy(b.flipped(width=200, height=100)) == (190, 40, 200, 80)
    assert b.flipped(width=200).flipped(width=200) == b and b.flipped() == b
    tagged = Box("scratches", 3.25, 7.25, 50.75, 61.0, truncated=True, difficult=True)
    assert tagged.flipped(width=200) == Box("scratches", 149.25, 7.25, 196.75, 61.0, True, True)
    for bb in (b, tagged):  # fractional edges too: the covered pixels are the mirrored ones
        mask = box_mask([bb], (100, 200))
        np.testing.assert_array_equal(box_mask([bb.flipped(width=200)], (100, 200)), mask[:, ::-1])
        np.testing.assert_array_equal(box_mask([bb.flipped(height=100)], (100, 200)), mask[::-1])


def test_box_shifted_moves_and_clipped_keeps_the_part_inside_the_image():
    b = Box("crazing", 10, 20, 50, 60, truncated=True)
    assert xyxy(b.shifted(5, -30)) == (15, -10, 55, 30)
    assert b.shifted(5, -30).shifted(-5, 30) == b
    mask = box_mask([b], (100, 200))
    np.testing.assert_array_equal(box_mask([b.shifted(7, 3)], (100, 200))[3:, 7:], mask[:-3, :-7])
    assert b.shifted(5, -30).clipped(200, 100) == Box("crazing", 15, 0, 55, 30, truncated=True)
    assert xyxy(b.shifted(180, 0).clipped(200, 100)) == (190, 20, 200, 60)
    assert b.shifted(-60, 0).clipped(200, 100).area == 0  # pushed out entirely: empty
    assert b.clipped(200, 100) == b


def test_rescale_boxes_moves_boxes_between_resolutions():
    b = Box("crazing", 0, 20, 10, 60, difficult=True)  # on a 100 high × 200 wide image
    (s,) = rescale_boxes((b,), (100, 200), (50, 400))  # sizes are (height, width)
    assert s == Box("crazing", 0, 10, 20, 30, difficult=True) == b.scaled(2, 0.5)
    (full,) = rescale_boxes((Box("a", 0, 0, 200, 100),), (100, 200), (37, 53))
    assert xyxy(full) == pytest.approx((0, 0, 53, 37))  # the whole image stays the whole image
    assert rescale_boxes((), (100, 200), (1, 1)) == ()


# --------------------------------------------------------------------------- hostile XML


def test_valid_voc_conversion_and_float_coordinates():
    ann = parse_voc(voc([box(xmin="12.0", ymin="1", xmax="12", ymax="200.0")]), name="a.xml")
    (b,) = ann.boxes
    assert (b.x0, b.y0, b.x1, b.y1) == (11.0, 0.0, 12.0, 200.0)  # xmin == xmax: one pixel wide
    assert b.area == 200.0 and ann.size == (200, 200) and ann.filename == "x.jpg"
    assert ann.warnings == ()


def test_malformed_xml_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<annotation>\n  <object>\n</annotation>")
    with pytest.raises(DataError, match=r"^bad\.xml: malformed XML \(line 3, column \d+\): ") as e:
        parse_voc(bad)
    assert e.value.path == str(bad) and e.value.field is None
    with pytest.raises(DataError, match=r"^empty\.xml: malformed XML"):
        parse_voc(b"", name="empty.xml")
    with pytest.raises(DataError, match=r"^nope\.xml: cannot read XML"):
        parse_voc(tmp_path / "nope.xml")
    with pytest.raises(DataError, match=r"^upload\.xml: malformed XML \(line 3") as e:
        parse_voc(bad, name="upload.xml")
    assert e.value.path == str(bad) and e.value.name == "upload.xml"
    with pytest.raises(DataError, match=r"root element is <html>, expected <annotation>"):
        parse_voc(b"<html/>")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_xxe_never_reads_the_secret(tmp_path, encoding):
    secret = "S3CR3T-d41d8cd98f00"
    (tmp_path / "secret.txt").write_text(secret)
    uri = (tmp_path / "secret.txt").as_uri()
    docs = [
        f'<!DOCTYPE annotation [<!ENTITY x SYSTEM "{uri}">]>'
        "<annotation><filename>&x;</filename><object><name>&x;</name></object></annotation>",
        f'<!DOCTYPE annotation [<!ENTITY % p SYSTEM "{uri}"> %p;]><annotation/>',
        f'<!DOCTYPE annotation SYSTEM "{uri}"><annotation><filename>&x;</filename></annotation>',
    ]
    for doc in docs:
        data = f'<?xml version="1.0" encoding="{encoding}"?>{doc}'.encode(encoding)
        with pytest.raises(DataError, match=r"^xxe\.xml: entity (declarations|references)") as e:
            parse_voc(data, name="xxe.xml")
        assert secret not in str(e.value) and secret not in repr(e.value.__dict__)
    # a DOCTYPE naming an external DTD, without entities, parses, and the DTD is not loaded
    ok = f'<!DOCTYPE annotation SYSTEM "{uri}"><annotation><filename>a</filename></annotation>'
    assert secret not in repr(parse_voc(ok.encode()))


def test_billion_laughs_is_refused_quickly():
    lol = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    doc = f"<!DOCTYPE annotation [{lol}]><annotation><filename>&l9;</filename></annotation>"
    with pytest.raises(DataError, match="entity declarations are not allowed"):
        parse_voc(doc.encode(), name="lol.xml")


def test_missing_or_non_numeric_fields_name_object_and_field():
    with pytest.raises(DataError, match=r"^a\.xml: <object>\[1\]/bndbox: missing$") as e:
        parse_voc(voc([{"name": "crazing", "bndbox": "none"}]), name="a.xml")
    assert e.value.field == "<object>[1]/bndbox"
    with pytest.raises(DataError, match=r"<object>\[1\]/bndbox/ymax: missing"):
        parse_voc(voc([{k: v for k, v in box().items() if k != "ymax"}]), name="a.xml")
    with pytest.raises(DataError, match=r"<object>\[1\]/name: missing class name"):
        parse_voc(voc([{k: v for k, v in box().items() if k != "name"}]), name="a.xml")
    with pytest.raises(DataError, match=r"<object>\[1\]/name: missing class name"):
        parse_voc(voc([box(name="   ")]), name="a.xml")
    msg = "crazing_1.xml: <object>[2]/bndbox/xmin: 'abc' is not a number"
    with pytest.raises(DataError, match=r"^" + msg.replace("[", r"\[").replace("]", r"\]") + "$"):
        parse_voc(voc([box(), box(xmin="abc")]), name="crazing_1.xml")
    for junk in ("nan", "1_0", "0x10", ""):
        with pytest.raises(DataError, match=r"<object>\[1\]/bndbox/xmin: .* number|missing"):
            parse_voc(voc([box(xmin=junk)]), name="a.xml")
    with pytest.raises(DataError, match=r"'1e999' is not a finite number"):
        parse_voc(voc([box(ymax="1e999")]), name="a.xml")
    long = "9" * 10 + "x" * 500
    with pytest.raises(DataError) as e:
        parse_voc(voc([box(xmin=long)]), name="a.xml")
    assert "x" * 60 not in str(e.value)  # values are quoted short


def test_box_rules_drop_clip_and_warn():
    ann = parse_voc(
        voc(
            [
                box(xmin=-5, ymin=10, xmax=30, ymax=40),  # 1: negative → clipped
                box(xmin=50, ymin=10, xmax=40, ymax=40),  # 2: inverted → dropped
                box(xmin=150, ymin=190, xmax=250, ymax=260),  # 3: past the edge → clipped
                box(xmin=201, ymin=10, xmax=300, ymax=40),  # 4: entirely outside → dropped
                box(name=" rust ", xmin=1, ymin=1, xmax=10, ymax=10),  # 5: unknown class, kept
                box(xmin=10, ymin=20, xmax=20, ymax=19),  # 6: inverted in y → dropped
            ]
        ),
        name="r.xml",
    )
    assert [(b.cls, b.x0, b.y0, b.x1, b.y1) for b in ann.boxes] == [
        ("crazing", 0, 9, 30, 40),
        ("crazing", 149, 189, 200, 200),
        ("rust", 0, 0, 10, 10),
    ]
    w = "\n".join(ann.warnings)
    assert len(ann.warnings) == 6
    assert "<object>[1]: box (-5, 10, 30, 40) clipped to the 200x200 image" in w
    assert "<object>[2]: inverted box (50, 10, 40, 40) dropped" in w
    assert "<object>[3]: box (150, 190, 250, 260) clipped" in w
    assert "<object>[4]: box (201, 10, 300, 40) is entirely outside the 200x200 image" in w
    assert "<object>[5]: class 'rust' is not a NEU-DET class" in w
    assert "<object>[6]: inverted" in w
    assert all(x.startswith("r.xml: ") for x in ann.warnings)


def test_image_size_overrides_xml_size_and_missing_size():
    ann = parse_voc(voc([box(xmax=150, ymax=150)]), name="s.xml", image_size=(100, 120))
    assert ann.size == (100, 120)
    assert (ann.boxes[0].x1, ann.boxes[0].y1) == (120, 100)
    assert any("<size> says 200x200 but the image is 120x100" in w for w in ann.warnings)
    free = parse_voc(voc([box(xmin=-3, xmax=900, ymax=900)], size=None), name="n.xml")
    assert free.size is None
    assert (free.boxes[0].x0, free.boxes[0].x1, free.boxes[0].y1) == (0, 900, 900)
    zero = parse_voc(voc([box()], size=(0, 0)), name="z.xml")
    assert zero.size is None and "image size ignored" in zero.warnings[0]
    with pytest.raises(DataError, match=r"<size>/width: 'wide' is not a number"):
        parse_voc(voc([box()]).replace(b"<width>200", b"<width>wide"), name="w.xml")


def test_too_many_objects_and_too_large_are_refused(tmp_path):
    many = voc("<object><name>a</name></object>" * (2 * MAX_OBJECTS))
    assert len(many) < 1 << 20
    with pytest.raises(DataError, match=r"^m\.xml: too many objects \(20,000 > 10,000\)"):
        parse_voc(many, name="m.xml")
    big = voc("<!--" + "x" * (1 << 20) + "-->")
    with pytest.raises(DataError, match=r"^b\.xml: XML is too large"):
        parse_voc(big, name="b.xml")
    (tmp_path / "big.xml").write_bytes(big)
    with pytest.raises(DataError, match=r"^big\.xml: XML is too large"):
        parse_voc(tmp_path / "big.xml")


def test_dataerror_pickles():
    err = DataError("bad", path="/x/a.xml", field="<size>/width")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path, back.field) == ("a.xml: <size>/width: bad", "/x/a.xml", err.field)
    shown = DataError("bad", path="/x/a.xml", name="b.xml")
    assert str(pickle.loads(pickle.dumps(shown))) == "b.xml: bad"
    assert isinstance(back, ValueError)


# --------------------------------------------------------------------------- hostile images


def test_unreadable_images_name_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"^empty\.jpg: empty file"):
        read_image(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    with pytest.raises(DataError, match=r"^notes\.jpg: not a readable image"):
        read_image(text)
    rng = np.random.default_rng(0)
    jpeg = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    with pytest.raises(DataError, match=r"^cut\.jpg: cannot decode JPEG \(truncated or corrupt"):
        read_image(jpeg[: len(jpeg) // 2], name="cut.jpg")
    with pytest.raises(DataError, match=r"^gone\.png: cannot read image file"):
        read_image(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"^shown\.png: cannot read image file") as e:
        read_image(tmp_path / "gone.png", name="shown.png")
    assert e.value.path == str(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"^<bytes>: empty file") as e:
        read_image(b"")
    assert e.value.path == "<bytes>"


def test_decompression_bomb_refused_from_header():
    with pytest.raises(DataError, match=r"^bomb\.png: image is too large.*900,?000,?000 pixels"):
        read_image(png_header_only(30000, 30000), name="bomb.png")
    with pytest.raises(DataError, match=r"too large: 8000x8000 = 64,000,000 pixels \(limit 40,000"):
        read_image(png_header_only(8000, 8000), name="big.png")
    with pytest.raises(DataError, match=r"too large: 20x10 = 200 pixels \(limit 100\)"):
        read_image(encode(Image.new("L", (20, 10)), "PNG"), max_pixels=100)


def test_colour_modes_become_gray():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 255, 255, 0), (100, 100, 100, 255), (200, 200, 200, 128)])
    assert read_image(encode(rgba, "PNG")).tolist() == [[0, 100, 100]]  # on black
    pal = Image.new("P", (4, 1))
    pal.putpalette([v for i in range(256) for v in (i, i, i)])
    pal.putdata([0, 7, 128, 255])
    assert read_image(encode(pal, "PNG")).tolist() == [[0, 7, 128, 255]]
    rgb = Image.new("RGB", (2, 1))
    rgb.putdata([(255, 0, 0), (0, 0, 255)])
    assert read_image(encode(rgb, "BMP")).tolist() == [[76, 29]]  # ITU-R 601 luma
    cmyk = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
    cmyk.paste((0, 0, 0, 255), (8, 0, 16, 8))
    gray = read_image(encode(cmyk, "JPEG", quality=95), name="cmyk.jpg")
    assert gray.shape == (8, 16) and gray.dtype == np.uint8
    assert gray[:, :6].min() > 240 and gray[:, 10:].max() < 15
    la = Image.new("LA", (1, 1), (80, 255))
    assert read_image(encode(la, "PNG")).tolist() == [[80]]


def test_high_bit_depth_is_scaled_not_clipped():
    ramp = np.array([[0, 1000, 2000, 4000]], dtype=np.uint16)
    out = read_image(encode(Image.fromarray(ramp), "PNG"))
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 64, 128, 255]]
    full = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    assert read_image(encode(Image.fromarray(full), "TIFF")).tolist() == [[0, 1, 128, 255]]
    flt = np.array([[-1.0, 0.0, 1.0]], dtype=np.float32)
    assert read_image(encode(Image.fromarray(flt), "TIFF")).tolist() == [[0, 128, 255]]
    const = np.full((2, 2), 300, dtype=np.int32)
    assert read_image(encode(Image.fromarray(const), "TIFF")).tolist() == [[255, 255]] * 2


def test_exif_orientation_is_applied():
    arr = np.zeros((10, 20), np.uint8)  # height 10, width 20
    arr[:5, :5] = 255  # bright top-left corner
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = read_image(encode(im, "JPEG", exif=exif, quality=95))
    assert out.shape == (20, 10)
    assert out[:5, -5:].mean() > 200 and out[-5:, :5].mean() < 50  # top-left went top-right


@pytest.mark.parametrize("size", [(1, 1), (1, 5000), (5000, 1)])
def test_tiny_and_extreme_aspect_images(size, tmp_path):
    w, h = size
    path = tmp_path / "thin.png"
    Image.new("L", size, 9).save(path)
    out = read_image(str(path))
    assert out.shape == (h, w) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert (out == 9).all()


# --------------------------------------------------------------------------- dataset folders


def write_png(path: Path, value: int = 50) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (40, 30), value).save(path)


def test_voc_folder_with_bad_files_loads_the_rest(tmp_path):
    for i in (1, 2, 3, 4):
        write_png(tmp_path / f"crazing_{i}.png")
    (tmp_path / "crazing_1.xml").write_bytes(voc([box(xmax=20, ymax=20)], size=(30, 40)))
    (tmp_path / "crazing_2.xml").write_bytes(b"<annotation><object></annotation>")  # corrupt
    (tmp_path / "crazing_3.xml").write_bytes(
        voc([box(xmax=20, ymax=20)], size=(30, 40), filename="nothing-like-it.bmp")
    )
    (tmp_path / "orphan_9.xml").write_bytes(voc([box()]))
    (tmp_path / "garbage_5.jpg").write_text("not decoded during load")
    (tmp_path / "garbage_5.xml").write_bytes(voc([box(name="scratches")], size=(30, 40)))
    ds = load_dataset(tmp_path)
    assert ds.layout == "voc-folder"
    assert [s.stem for s in ds.samples] == ["crazing_1", "crazing_3", "crazing_4", "garbage_5"]
    by = {s.stem: s for s in ds.samples}
    assert by["crazing_3"].boxes == by["crazing_1"].boxes  # <filename> ignored, joined on stem
    assert by["crazing_4"].boxes == () and "no XML annotation" in by["crazing_4"].warnings[0]
    assert by["garbage_5"].label is None and by["garbage_5"].labels == ("scratches",)
    assert [Path(e.path).name for e in ds.errors] == ["crazing_2.xml", "orphan_9.xml"]
    assert str(ds.errors[0]).startswith("crazing_2.xml: malformed XML (line 1")
    assert "no image with stem 'orphan_9'" in str(ds.errors[1])
    assert ds.classes == ("crazing", "scratches")


def test_voc_annotations_subfolder_images_layout_and_empty(tmp_path):
    voc_root = tmp_path / "voc"
    write_png(voc_root / "JPEGImages" / "b.png")
    write_png(voc_root / "a.png")
    (voc_root / "Annotations").mkdir()
    (voc_root / "Annotations" / "a.xml").write_bytes(voc([box(name="dent")], size=(30, 40)))
    ds = load_dataset(voc_root)
    assert ds.layout == "voc-folder" and [s.stem for s in ds.samples] == ["a", "b"]
    assert ds.classes == ("dent",) and ds.samples[0].size == (30, 40)
    plain = tmp_path / "plain"
    write_png(plain / "x_10.png")
    write_png(plain / "x_9.png")
    ds = load_dataset(plain)
    assert ds.layout == "images" and [s.stem for s in ds.samples] == ["x_9", "x_10"]
    assert all(s.warnings == () and s.boxes == () for s in ds.samples)
    only_images = tmp_path / "only"
    write_png(only_images / "IMAGES" / "c.png")
    assert load_dataset(only_images).layout == "images"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^empty: no images found"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match=r"^missing: not a folder"):
        load_dataset(tmp_path / "missing")


def test_kaggle_folder_label_and_duplicates(tmp_path):
    write_png(tmp_path / "train" / "images" / "rust" / "r_1.png")
    write_png(tmp_path / "train" / "images" / "patches" / "crazing_7.png")
    write_png(tmp_path / "validation" / "images" / "rust" / "r_1.png")
    (tmp_path / "train" / "annotations").mkdir(parents=True)
    (tmp_path / "validation" / "annotations").mkdir(parents=True)
    ds = load_dataset(tmp_path)
    assert ds.layout == "kaggle"
    assert [(s.stem, s.label) for s in ds.samples] == [("crazing_7", "crazing"), ("r_1", "rust")]
    assert "file name says 'crazing', folder says 'patches'" in ds.samples[0].warnings[0]
    assert len(ds.errors) == 1 and "duplicate image stem" in str(ds.errors[0])


def test_annotation_for_finds_the_xml_of_an_image_in_every_layout(tmp_path):
    layouts = {
        "flat": ("NEU-DET/IMAGES/a_1.jpg", "NEU-DET/ANNOTATIONS/a_1.xml"),
        "voc": ("VOC/JPEGImages/a_1.jpg", "VOC/Annotations/a_1.xml"),
        "kaggle": ("K/train/images/a/a_1.jpg", "K/train/annotations/a_1.xml"),
        "beside": ("loose/a_1.jpg", "loose/a_1.xml"),
    }
    for image, xml in layouts.values():
        for rel in (image, xml):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(b"")
        assert annotation_for(tmp_path / image) == tmp_path / xml
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "b_2.jpg").write_bytes(b"")
    assert annotation_for(tmp_path / "bare" / "b_2.jpg") is None
