"""cam_core.archive: an uploaded zip or loose files become a dataset folder read exactly like one
on disk; hostile zips (bomb, traversal, 10,000 entries, symlink, corrupt) each get their own
error naming the entry, and nothing is left behind or written outside the upload folder."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from cam_core.archive import ArchiveError, UploadLimits, dataset_root, extract_zip, save_upload
from cam_core.data import load_dataset


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _folder_entries(root: Path, prefix: str = "") -> dict[str, bytes]:
    return {
        prefix + p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _same_dataset(a: Path, b: Path) -> None:
    da, db = load_dataset(a), load_dataset(b)
    assert da.layout == db.layout
    assert [(s.stem, s.label, s.boxes, s.size) for s in da.samples] == [
        (s.stem, s.label, s.boxes, s.size) for s in db.samples
    ]
    assert len(da) > 0


def test_a_zipped_voc_folder_reads_like_the_folder(voc: Path, tmp_path: Path) -> None:
    for prefix in ("", "my-set/"):  # zipped contents, or the folder itself zipped
        dest = tmp_path / f"up{len(prefix)}"
        root = save_upload([("set.zip", _zip(_folder_entries(voc, prefix)))], dest)
        assert root == (dest / "my-set" if prefix else dest)
        _same_dataset(root, voc)


def test_loose_images_and_xml_read_like_the_folder(voc: Path, tmp_path: Path) -> None:
    files = [(p.name, p.read_bytes()) for p in sorted(voc.rglob("*")) if p.is_file()]
    root = save_upload(files, tmp_path / "up")
    flat = tmp_path / "flat"  # the same files in one folder (the synthetic set is NEU-flat)
    flat.mkdir()
    for name, data in files:
        (flat / name).write_bytes(data)
    _same_dataset(root, flat)
    assert load_dataset(root).layout == "voc-folder"


def _refused(tmp_path: Path, data: bytes, match: str, **limits: int) -> ArchiveError:
    dest = tmp_path / "session" / "up"
    with pytest.raises(ArchiveError, match=match) as err:
        save_upload([("evil.zip", data)], dest, limits=UploadLimits(**limits))
    assert not dest.exists(), "a refused upload leaves nothing behind"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["session"], "written outside"
    return err.value


def test_zip_bomb_by_ratio(tmp_path: Path) -> None:
    err = _refused(tmp_path, _zip({"IMAGES/a.jpg": b"\0" * (8 << 20)}), r"zip bomb\? .*:1")
    assert err.entry == "IMAGES/a.jpg"


def test_zip_bomb_by_total_size(tmp_path: Path) -> None:
    entries = {f"x{i}.jpg": os.urandom(300_000) for i in range(4)}
    err = _refused(
        tmp_path,
        _zip(entries, zipfile.ZIP_STORED),
        "expands to more than",
        max_total_bytes=1_000_000,
    )
    assert err.entry == "x3.jpg"


def test_zip_bomb_by_one_file(tmp_path: Path) -> None:
    _refused(
        tmp_path,
        _zip({"big.jpg": os.urandom(2000)}),
        "2,000 bytes .limit 1,000 per file",
        max_file_bytes=1000,
    )


def test_a_header_that_lies_about_the_size_writes_no_more(tmp_path: Path) -> None:
    data = bytearray(_zip({"a.jpg": os.urandom(50_000)}, zipfile.ZIP_STORED))
    # declare 10 bytes in the local header and the central directory
    local = data.index(b"PK\x03\x04")
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    err = _refused(tmp_path, bytes(data), "corrupt entry")
    assert err.entry == "a.jpg"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.jpg", "path traversal"),
        ("IMAGES/../../evil.jpg", "path traversal"),
        ("/tmp/evil.jpg", "absolute path"),
        ("C:\\evil.jpg", "absolute path"),
        ("..\\..\\evil.jpg", "path traversal"),
    ],
)
def test_path_traversal_and_absolute_paths(tmp_path: Path, name: str, why: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("IMAGES/ok.jpg", b"fine")
        zf.writestr(zipfile.ZipInfo(name), b"evil")  # ZipInfo keeps the name as given
    err = _refused(tmp_path, buf.getvalue(), f"{why}.*outside the upload folder")
    assert err.entry == name
    assert not Path("/tmp/evil.jpg").exists()


def test_ten_thousand_tiny_entries(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(10_000):
            zf.writestr(f"IMAGES/{i}.xml", b"")
    err = _refused(tmp_path, buf.getvalue(), r"too many entries: 10,000 \(limit 5,000")
    assert err.entry is None


def test_a_symlink_entry(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("IMAGES/passwd.jpg")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    err = _refused(tmp_path, buf.getvalue(), "symbolic link refused")
    assert err.entry == "IMAGES/passwd.jpg"


@pytest.mark.parametrize("cut", ["random", "truncated", "empty"])
def test_a_corrupt_archive(tmp_path: Path, cut: str) -> None:
    good = _zip({f"a{i}.jpg": os.urandom(2000) for i in range(3)})
    data = {"random": os.urandom(5000), "truncated": good[: len(good) // 2], "empty": b""}[cut]
    err = _refused(tmp_path, data, "not a readable zip archive")
    assert err.entry == "evil.zip"


def test_a_corrupt_entry_names_it(tmp_path: Path) -> None:
    data = bytearray(_zip({"a.jpg": b"A" * 5000, "b.jpg": os.urandom(3000)}, zipfile.ZIP_STORED))
    at = data.index(b"A" * 100)
    data[at : at + 10] = b"B" * 10  # CRC no longer matches
    assert _refused(tmp_path, bytes(data), "corrupt entry").entry == "a.jpg"


def test_duplicates_mixed_uploads_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="another uploaded file has this name"):
        save_upload([("a.jpg", b"1"), ("A.JPG", b"2")], tmp_path / "u1")
    with pytest.raises(ArchiveError, match=r"either one \.zip or images"):
        save_upload([("a.zip", _zip({"x.jpg": b"1"})), ("b.jpg", b"2")], tmp_path / "u2")
    with pytest.raises(ArchiveError, match="nothing uploaded"):
        save_upload([], tmp_path / "u3")
    with pytest.raises(ArchiveError, match=r"too many files: 3 \(limit 2"):
        save_upload(
            [(f"{i}.jpg", b"1") for i in range(3)],
            tmp_path / "u4",
            limits=UploadLimits(max_files=2),
        )
    # loose files are written by base name only: a path in the name never leaves the folder
    root = save_upload([("../../x.jpg", b"1")], tmp_path / "u5")
    assert [p.name for p in root.iterdir()] == ["x.jpg"]
    assert not (tmp_path / "x.jpg").exists()


def test_after_a_refusal_the_next_upload_works(voc: Path, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError):
        save_upload([("bad.zip", b"nope")], tmp_path / "up-1")
    root = save_upload([("good.zip", _zip(_folder_entries(voc)))], tmp_path / "up-2")
    _same_dataset(root, voc)


def test_extract_zip_from_a_path_and_junk_left_out(tmp_path: Path) -> None:
    path = tmp_path / "in.zip"
    path.write_bytes(_zip({"d/a.jpg": b"1", "__MACOSX/d/._a.jpg": b"2", "d/.DS_Store": b"3"}))
    out = extract_zip(path, tmp_path / "out")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["d", "d/a.jpg"]
    assert dataset_root(out) == out / "d"


# ------------------------------------------------------------------ the app: an upload as data

APP = str(Path(__file__).resolve().parents[1] / "app.py")
DEMO = Path(__file__).resolve().parents[1] / "models" / "demo-synthetic" / "model.pt"


@pytest.fixture()
def app(monkeypatch: pytest.MonkeyPatch):
    if not DEMO.is_file():
        pytest.skip(f"bundled demo model missing ({DEMO})")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr("cam_core.data.find_neu_det", lambda: None)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["model_choice"] = "demo-synthetic"
    return at


def _ok(at):
    assert not at.exception, [e.message for e in at.exception]
    return at


def _drop(at, files: list[tuple[str, bytes]]):
    box = next(f for f in at.sidebar.file_uploader if f.key.startswith("data_upload_"))
    box.set_value([(name, data, "application/octet-stream") for name, data in files])
    return _ok(at.run())


def test_an_uploaded_zip_is_evaluated_like_a_folder_and_hostile_ones_are_named(
    app, voc: Path
) -> None:
    at = _ok(app.run())
    _ok(at.switch_page("pages/evaluate.py").run())  # (Explore would draw maps meanwhile)
    _drop(at, [("line-7.zip", _zip(_folder_entries(voc, "line-7/")))])
    at.sidebar.selectbox(key="model_choice").set_value("demo-synthetic")  # uploads read as real
    _ok(at.run())
    captions = at.sidebar.caption.values
    assert any(c.startswith("**uploaded** line-7.zip · 18 images") for c in captions), captions
    assert at.sidebar.selectbox(key="split").disabled  # an upload is used whole
    data_line = next(m.value for m in at.markdown if m.value.startswith("**Data:**"))
    assert "line-7.zip" in data_line and "18 images" in data_line, data_line
    assert "cam-core-uploads" not in data_line  # the name the user knows, not our temp folder
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(0)
    next(b for b in at.button if b.label == "Run evaluation").click()
    _ok(at.run())
    assert any(s.value.startswith("**Done** — 18 images") for s in at.success)
    # each hostile zip: its own error in the sidebar, the upload before it stays in use
    hostile = {
        "bomb.zip": (_zip({"IMAGES/a.jpg": b"\0" * (8 << 20)}), "IMAGES/a.jpg: zip bomb?"),
        "corrupt.zip": (b"PK\x03\x04 not really", "corrupt.zip: not a readable zip archive"),
        "traversal.zip": (_zip({"../../etc/x.jpg": b"1"}), "../../etc/x.jpg: path traversal"),
    }
    for name, (data, message) in hostile.items():
        _drop(at, [(name, data)])
        errors = [e.value for e in at.sidebar.error]
        assert any(message in e for e in errors), (name, errors)
        assert any(c.startswith("**uploaded** line-7.zip") for c in at.sidebar.caption.values)
        assert any(s.value.startswith("**Done** — 18 images") for s in at.success)
    # back to the folder (none here: the synthetic demo)
    next(b for b in at.sidebar.button if b.label == "Use the dataset folder instead").click()
    _ok(at.run())
    assert any("synthetic demo" in m.value for m in at.markdown if m.value.startswith("**Data:**"))
