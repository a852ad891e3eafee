"""cam_core.uploads: uploaded files → images with boxes; dataset samples → images."""

import io

import numpy as np
import pytest
from PIL import Image

from cam_core import synth, uploads
from cam_core.data import Box, Sample


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def demo():
    stem, image, boxes = synth.make_sample_set(1, seed=11)[0]
    return stem, image, boxes, synth.voc_xml(f"{stem}.png", image.shape, boxes)


def test_image_and_xml_are_paired_by_stem(demo):
    stem, image, boxes, xml = demo
    report = uploads.read_uploads([(f"{stem}.xml", xml), (f"{stem}.png", _png(image))])
    assert report.errors == ()
    (item,) = report.items
    assert item.name == f"{stem}.png" and item.source == "upload"
    assert np.array_equal(item.image, image)
    assert item.boxes == boxes and item.sample.label == "crazing"
    assert item.has_annotation and item.key.startswith("upload:")


def test_bad_files_are_named_and_do_not_stop_the_good_ones(demo):
    stem, image, _, xml = demo
    small = np.zeros((50, 60), np.uint8)
    report = uploads.read_uploads(
        [
            ("notes.jpg", b"plain text, not a JPEG"),
            ("empty.png", b""),
            ("report.pdf", b"%PDF-1.4"),
            (f"{stem}.png", _png(image)),
            ("lonely.xml", xml),
            ("small.png", _png(small)),
            ("small.xml", xml),  # annotates a 200x200 image
            ("broken.png", _png(small)[:40]),
            ("broken.xml", b"<annotation><object>"),
        ]
    )
    errors = "\n".join(report.errors)
    assert [i.name for i in report.items] == [f"{stem}.png", "small.png"]
    assert "notes.jpg: not a readable image" in errors
    assert "empty.png: empty file (0 bytes)" in errors
    assert "report.pdf: unsupported file type '.pdf'" in errors
    assert "lonely.xml: no uploaded image has the stem 'lonely'" in errors
    assert "small.xml: annotates a 200x200 image but small.png is 60x50" in errors
    assert "broken.png: " in errors
    assert "broken.xml: " not in errors  # its image is rejected, so it is only noted
    assert "broken.xml: not used, its image broken.png was rejected" in report.warnings
    small_item = report.items[1]
    assert small_item.boxes == () and not small_item.has_annotation


def test_huge_and_duplicate_uploads_are_refused(demo):
    image = demo[1]
    report = uploads.read_uploads(
        [
            ("big.png", _png(np.zeros((300, 300), np.uint8))),
            ("a.png", _png(image)),
            ("a.jpg", _png(image)),
        ],
        max_pixels=200 * 200,
    )
    errors = "\n".join(report.errors)
    assert "big.png: image is too large: 300x300" in errors
    assert "a.jpg: another uploaded file has the stem 'a'" in errors
    assert [i.name for i in report.items] == ["a.png"]
    report = uploads.read_uploads([("x.png", b"0" * 11)], max_bytes=10)
    assert report.errors == ("x.png: file is too large (11 bytes; limit 10)",)


def test_xml_boxes_are_clipped_to_the_uploaded_image(demo):
    stem, image, _, _ = demo
    xml = synth.voc_xml(f"{stem}.png", image.shape, (Box("scratches", 150, 150, 260, 260),))
    xml = xml.replace(b"<xmax>200</xmax>", b"<xmax>260</xmax>")
    report = uploads.read_uploads([(f"{stem}.png", _png(image)), (f"{stem}.xml", xml)])
    (item,) = report.items
    assert item.boxes[0].x1 <= 200 and item.boxes[0].cls == "scratches"


def test_item_from_sample_rescales_boxes_when_xml_size_differs(tmp_path):
    path = tmp_path / "crazing_1.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    sample = Sample(path, "crazing_1", "crazing", (Box("crazing", 0, 0, 100, 200),), (200, 200))
    item = uploads.item_from_sample(sample)
    assert item.boxes[0] == Box("crazing", 0, 0, 50, 100)
    assert "boxes rescaled" in item.warnings[0]


def test_an_unreadable_upload_is_named_without_pillows_stream_object():
    """Issue 14 item 6: the error named ``<_io.BytesIO object at 0x…>``, not the file."""
    report = uploads.read_uploads([("notes.jpg", b"this is a text file, not a JPEG")])
    (error,) = report.errors
    assert error.startswith("notes.jpg: not a readable image")
    assert "BytesIO" not in error and " at 0x" not in error


def test_merge_uploads_adds_a_batch_and_keeps_one_item_per_image(demo):
    """Issue 14 item 7: a new batch adds to the earlier one; the same image twice is one item
    (the later upload, e.g. now with its XML, replaces the earlier)."""
    stem, image, _, xml = demo
    first = uploads.read_uploads([(f"{stem}.png", _png(image))]).items
    other = uploads.read_uploads([("other.png", _png(255 - image))]).items
    again = uploads.read_uploads([(f"{stem}.png", _png(image)), (f"{stem}.xml", xml)]).items
    merged = uploads.merge_uploads(first, other)
    assert [i.name for i in merged] == [f"{stem}.png", "other.png"]
    merged = uploads.merge_uploads(merged, again)
    assert [i.name for i in merged] == ["other.png", f"{stem}.png"]
    assert merged[-1].has_annotation and merged[-1].content == first[0].content
    # the same image again without its XML keeps the annotated item
    merged = uploads.merge_uploads(merged, first)
    assert [i.name for i in merged] == ["other.png", f"{stem}.png"] and merged[-1].has_annotation
