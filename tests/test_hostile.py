"""Hostile inputs the module tests leave out: fuzzed XML, image bytes and upload batches
(property-based), thousands of boxes, every EXIF orientation, palette transparency,
multi-frame files, and an XML whose <filename> names another image. All files are made here.
"""

import io
import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cam_core import uploads
from cam_core.data import MAX_OBJECTS, Annotation, DataError, parse_voc, read_image
from cam_core.metrics import localization_scores

pytestmark = [  # Pillow warns about the corrupt files it is fed here; they are refused or decoded
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]
FUZZ = settings(  # HOSTILE_EXAMPLES=5000 for a deeper search than CI's
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


def voc(objects: str, size: tuple[int, int] | None = (200, 200), filename: str = "x.jpg") -> bytes:
    """A VOC annotation with ``objects`` (raw XML) and an optional <size> (height, width)."""
    sz = f"<size><width>{size[1]}</width><height>{size[0]}</height></size>" if size else ""
    return f"<annotation><filename>{filename}</filename>{sz}{objects}</annotation>".encode()


def obj(name: str = "crazing", xmin="10", ymin="10", xmax="50", ymax="60") -> str:
    return (
        f"<object><name>{name}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _sample_images() -> list[bytes]:
    rng = np.random.default_rng(5)
    gray = Image.fromarray(rng.integers(0, 255, (12, 16), np.uint8))
    return [
        encode(gray, "PNG"),
        encode(gray, "JPEG", quality=80),
        encode(gray.convert("RGB"), "BMP"),
        encode(Image.fromarray(rng.integers(0, 65535, (8, 8), np.uint16)), "TIFF"),
    ]


SAMPLES = _sample_images()


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


mutations = st.tuples(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 4000)),
)


def _boxes_inside(ann: Annotation, h: int, w: int) -> None:
    for b in ann.boxes:
        coords = (b.x0, b.y0, b.x1, b.y1)
        assert all(np.isfinite(coords)), b
        assert 0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h, b


# --------------------------------------------------------------------------- fuzzed XML


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_as_xml_give_an_annotation_or_a_named_dataerror(data):
    try:
        ann = parse_voc(data, name="fuzz.xml", image_size=(200, 200))
    except DataError as exc:
        assert str(exc).startswith("fuzz.xml: ")
    else:
        _boxes_inside(ann, 200, 200)


@FUZZ
@given(mutations)
def test_mutated_voc_gives_an_annotation_or_a_named_dataerror(mutation):
    base = voc(
        obj() + obj("scratches", "-5", "190", "300", "250") + obj("rust", "1", "1", "2", "2")
    )
    try:
        ann = parse_voc(_mutate(base, *mutation), name="m.xml", image_size=(200, 200))
    except DataError as exc:
        assert str(exc).startswith("m.xml: ")
    else:
        _boxes_inside(ann, 200, 200)


coordinate = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=12).map(
        lambda s: s.replace("<", "").replace("&", "")
    ),  # well-formed XML: what the field parser makes of any text
)


@FUZZ
@given(st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=1, max_size=8))
def test_any_coordinates_give_boxes_inside_the_image_or_a_named_dataerror(coords):
    doc = voc("".join(obj("patches", *c) for c in coords))
    try:
        ann = parse_voc(doc, name="c.xml", image_size=(120, 160))
    except DataError as exc:
        assert str(exc).startswith("c.xml: <object>[")  # names the object and field
    else:
        _boxes_inside(ann, 120, 160)
        assert len(ann.boxes) <= len(coords)


# --------------------------------------------------------------------------- fuzzed images


def _is_gray_image(out: np.ndarray) -> bool:
    return out.ndim == 2 and out.dtype == np.uint8 and min(out.shape) >= 1


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_as_image_give_gray_pixels_or_a_named_dataerror(data):
    try:
        out = read_image(data, name="fuzz.png")
    except DataError as exc:
        assert str(exc).startswith("fuzz.png: ")
    else:
        assert _is_gray_image(out)


@FUZZ
@given(st.sampled_from(range(len(SAMPLES))), mutations)
def test_corrupted_real_images_give_gray_pixels_or_a_named_dataerror(which, mutation):
    try:
        out = read_image(_mutate(SAMPLES[which], *mutation), name="bent.img")
    except DataError as exc:
        assert str(exc).startswith("bent.img: ")
    else:
        assert _is_gray_image(out)


upload_names = st.sampled_from(
    ["a.png", "a.xml", "b.jpg", "b.xml", "c.tif", "c.bmp", "d.xml", "e.pdf", "noext", ".png"]
)
upload_data = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([*SAMPLES, voc(obj()), voc(obj(), size=(12, 16)), b""]),
)


@FUZZ
@given(st.lists(st.tuples(upload_names, upload_data), max_size=6))
def test_any_upload_batch_is_reported_never_raised(files):
    report = uploads.read_uploads(files)
    names = [n for n, _ in files]
    for message in report.errors:
        assert any(message.startswith(f"{n}: ") for n in names), message
    assert len(report.items) <= len(files)
    for item in report.items:
        assert item.name in names and _is_gray_image(item.image)
        h, w = item.image.shape
        for b in item.boxes:
            assert 0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h, (item.name, b)


# --------------------------------------------------------------------------- many boxes


def test_thousands_of_objects_parse_upload_and_score():
    n = 5000  # as many as fit under the XML size limit; the object limit is MAX_OBJECTS
    assert n < MAX_OBJECTS
    objects = "".join(
        obj(
            ("crazing", "patches")[i % 2],
            1 + i % 190,
            1 + (i * 7) % 190,
            10 + i % 190,
            10 + (i * 7) % 190,
        )
        for i in range(n)
    )
    doc = voc(objects)
    t0 = time.perf_counter()
    ann = parse_voc(doc, name="many.xml")
    assert len(ann.boxes) == n and ann.warnings == ()
    image = np.zeros((200, 200), np.uint8)
    report = uploads.read_uploads(
        [("many.png", encode(Image.fromarray(image), "PNG")), ("many.xml", doc)]
    )
    (item,) = report.items
    assert len(item.boxes) == n and report.errors == ()
    cam = np.zeros((200, 200), np.float32)
    cam[100, 100] = 1.0
    scores = localization_scores(cam, list(item.sample.boxes_for("crazing")))
    assert scores["pointing"] in (True, False) and 0.0 <= scores["energy"] <= 1.0
    # linear work: a quadratic step over 5,000 boxes would take minutes, not seconds
    assert time.perf_counter() - t0 < 30


# --------------------------------------------------------------------------- image kinds


EXIF_ORIENTATION = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(EXIF_ORIENTATION))
def test_every_exif_orientation_is_applied(orientation):
    stored = np.zeros((16, 32), np.uint8)  # 8x8 blocks survive JPEG almost exactly
    stored[:8, :8], stored[8:, 24:], stored[:8, 16:24] = 250, 120, 60
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    out = read_image(encode(im, "JPEG", exif=exif, quality=100), name=f"o{orientation}.jpg")
    want = EXIF_ORIENTATION[orientation](stored)
    assert out.shape == want.shape
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 12


def test_palette_transparency_is_composited_on_black():
    pal = Image.new("P", (3, 1))
    pal.putpalette([v for i in range(256) for v in (i, i, i)])
    pal.putdata([200, 90, 255])
    pal.info["transparency"] = 200  # palette index 200 is see-through
    assert read_image(encode(pal, "PNG", transparency=200)).tolist() == [[0, 90, 255]]


def test_multi_frame_tiff_gives_its_first_frame():
    first, second = Image.new("L", (6, 4), 33), Image.new("L", (6, 4), 199)
    data = encode(first, "TIFF", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = read_image(data, name="pages.tif")
    assert out.shape == (4, 6) and (out == 33).all()


def test_upload_xml_naming_another_image_is_paired_by_stem_with_a_note():
    image = encode(Image.new("L", (200, 200), 7), "PNG")
    doc = voc(obj(), filename="some_other_picture.jpg")
    report = uploads.read_uploads([("scratches_9.png", image), ("scratches_9.xml", doc)])
    (item,) = report.items
    assert report.errors == ()
    assert [(b.x0, b.y0, b.x1, b.y1) for b in item.boxes] == [(9, 9, 50, 60)]
    assert any(
        "<filename> says 'some_other_picture.jpg', paired by stem" in w for w in item.warnings
    )
