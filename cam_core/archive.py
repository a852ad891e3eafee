"""Uploaded datasets on disk: one ``.zip`` of a VOC / NEU-DET folder, or many images with their
VOC XML, written into a fresh folder that :func:`cam_core.data.load_dataset` then reads exactly
like any dataset folder.

Everything uploaded is hostile until proven otherwise. :func:`save_upload` writes nothing outside
its destination folder and refuses, each with its own :class:`ArchiveError` naming the entry:

- a corrupt or non-zip archive (``"not a readable zip archive"``);
- too many entries (``"too many entries"``; a zip of 10,000 tiny files);
- a zip bomb: a total uncompressed size over the limit, one entry over the per-file limit, or a
  compression ratio no image or XML reaches (``"zip bomb"``);
- path traversal (``..``), absolute paths and drive letters (``"outside the upload folder"``);
- symbolic links and other special files (``"symbolic link"``, ``"special file"``);
- duplicate names and encrypted entries.

Sizes are checked twice: from the central directory before anything is written, and while
streaming each entry out (a lying header cannot write more than the limits). On any error the
half-written folder is deleted, so an earlier upload of the session stays usable.

Example::

    folder = save_upload([("neu.zip", zip_bytes)], Path("/tmp/session/upload-1"))
    dataset = load_dataset(dataset_root(folder))
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "ArchiveError",
    "UploadLimits",
    "dataset_root",
    "extract_zip",
    "save_upload",
]


class ArchiveError(ValueError):
    """An upload that is refused; ``entry`` names the offending archive entry or file."""

    def __init__(self, message: str, entry: str | None = None) -> None:
        super().__init__(f"{entry}: {message}" if entry else message)
        self.entry = entry


@dataclass(frozen=True)
class UploadLimits:
    """What one uploaded dataset may hold.

    ``max_files``: entries (files and folders) of an archive, or files dropped together;
    ``max_total_bytes``: their uncompressed sum; ``max_file_bytes``: one file;
    ``max_ratio``: uncompressed / compressed size of one entry larger than ``ratio_floor``
    bytes (JPEGs barely compress; VOC XML reaches ~10×; a bomb 1000×).
    """

    max_files: int = 5_000
    max_total_bytes: int = 1 << 30
    max_file_bytes: int = 50 << 20
    max_ratio: float = 200.0
    ratio_floor: int = 1 << 20


DEFAULT_LIMITS = UploadLimits()
_CHUNK = 1 << 16
_SKIPPED = re.compile(r"(^|/)(__MACOSX|\.DS_Store|Thumbs\.db)(/|$)")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive entry name, or ArchiveError when it would leave the
    destination (absolute, drive letter, ``..``) or is empty.
    """
    text = name.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise ArchiveError("absolute path: would be written outside the upload folder", name)
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if ".." in parts:
        raise ArchiveError(
            "path traversal ('..'): would be written outside the upload folder", name
        )
    if not parts or any("\x00" in p for p in parts):
        raise ArchiveError("empty or invalid entry name", name)
    return parts


def _kind(info: zipfile.ZipInfo) -> str:
    """``"dir"``, ``"file"``, ``"symlink"`` or ``"special"`` from the entry's Unix mode."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symlink"
    if info.is_dir() or stat.S_ISDIR(mode):
        return "dir"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zipfile writes bare permission bits
        return "special"
    return "file"


def _check_entries(zf: zipfile.ZipFile, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    """Every entry checked from the central directory (nothing written yet); the file entries
    to extract, junk (``__MACOSX``, ``.DS_Store``) left out.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise ArchiveError(
            f"too many entries: {len(infos):,} (limit {limits.max_files:,} files and folders)"
        )
    total = 0
    seen: set[tuple[str, ...]] = set()
    files = []
    for info in infos:
        parts = _safe_parts(info.filename)
        kind = _kind(info)
        if kind == "symlink":
            raise ArchiveError(
                "symbolic link refused (it could point outside the upload)", info.filename
            )
        if kind == "special":
            raise ArchiveError("special file (device, pipe or socket) refused", info.filename)
        if info.flag_bits & 0x1:
            raise ArchiveError("encrypted entry: upload an unencrypted zip", info.filename)
        key = tuple(p.lower() for p in parts)
        if kind == "file" and key in seen:
            raise ArchiveError("duplicate entry name (names differ only in case?)", info.filename)
        seen.add(key)
        if kind == "dir" or _SKIPPED.search("/".join(parts)):
            continue
        if info.file_size > limits.max_file_bytes:
            raise ArchiveError(
                f"zip bomb? entry expands to {info.file_size:,} bytes "
                f"(limit {limits.max_file_bytes:,} per file)",
                info.filename,
            )
        if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ArchiveError(
                f"zip bomb? entry compressed {ratio:,.0f}:1 "
                f"({info.compress_size:,} → {info.file_size:,} bytes; images and XML stay "
                f"under {limits.max_ratio:g}:1)",
                info.filename,
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"zip bomb? the archive expands to more than {limits.max_total_bytes:,} bytes "
                f"(limit) by this entry",
                info.filename,
            )
        files.append(info)
    return files


def _copy_limited(src: io.BufferedIOBase, dst: io.BufferedIOBase, name: str, budget: int) -> int:
    """Copy at most ``budget`` bytes; more is a lying header (ArchiveError naming ``name``)."""
    written = 0
    while chunk := src.read(_CHUNK):
        written += len(chunk)
        if written > budget:
            raise ArchiveError("zip bomb? entry expands past its declared size / the limit", name)
        dst.write(chunk)
    return written


def _target(dest: Path, parts: Sequence[str], name: str) -> Path:
    """``dest / parts`` after checking it resolves inside ``dest``."""
    target = dest.joinpath(*parts)
    root = dest.resolve()
    if not target.resolve().is_relative_to(root):  # e.g. a folder that is a link
        raise ArchiveError("would be written outside the upload folder", name)
    return target


def extract_zip(
    source: bytes | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: UploadLimits = DEFAULT_LIMITS,
    name: str = "archive",
) -> Path:
    """Extract the zip ``source`` (bytes or a path) into the new folder ``dest`` after checking
    every entry (module docstring); returns ``dest``. ``dest`` must not exist. On any error
    :class:`ArchiveError` is raised (naming the entry, else ``name``) and ``dest`` is removed.
    """
    dest = Path(dest)
    dest.mkdir(parents=True)
    try:
        _extract(source, dest, limits, name)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def _extract(
    source: bytes | str | os.PathLike[str], dest: Path, limits: UploadLimits, name: str
) -> None:
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        zf = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"not a readable zip archive ({exc})", name) from None
    with zf:
        files = _check_entries(zf, limits)
        budget = limits.max_total_bytes
        for info in files:
            target = _target(dest, _safe_parts(info.filename), info.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "xb") as dst:
                    budget -= _copy_limited(src, dst, info.filename, min(budget, info.file_size))
            except ArchiveError:
                raise
            except FileExistsError:
                raise ArchiveError("duplicate entry name", info.filename) from None
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                # CRC mismatch, truncated data, unsupported compression
                raise ArchiveError(
                    f"corrupt entry, not a readable zip archive ({exc})", info.filename
                ) from None


def _write_files(files: Sequence[tuple[str, bytes]], dest: Path, limits: UploadLimits) -> None:
    if len(files) > limits.max_files:
        raise ArchiveError(f"too many files: {len(files):,} (limit {limits.max_files:,})")
    total = 0
    seen: set[str] = set()
    for name, data in files:
        base = PurePosixPath(name.replace("\\", "/")).name
        if base in ("", ".", "..") or "\x00" in base:
            raise ArchiveError("invalid file name", name)
        if base.lower() in seen:
            raise ArchiveError("another uploaded file has this name", name)
        seen.add(base.lower())
        if len(data) > limits.max_file_bytes:
            raise ArchiveError(
                f"file is too large ({len(data):,} bytes; limit {limits.max_file_bytes:,})", name
            )
        total += len(data)
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"the upload exceeds {limits.max_total_bytes:,} bytes by this file", name
            )
        with open(_target(dest, [base], name), "xb") as out:
            out.write(data)


def save_upload(
    files: Iterable[tuple[str, bytes]],
    dest: str | os.PathLike[str],
    *,
    limits: UploadLimits = DEFAULT_LIMITS,
) -> Path:
    """Write one upload — a single ``.zip`` (extracted with :func:`extract_zip`) or loose files
    (images and XML, by their base name) — into the new folder ``dest``; returns the folder to
    give :func:`cam_core.data.load_dataset` (:func:`dataset_root`). A zip mixed with other
    files, an empty upload, and every refusal of the module docstring raise
    :class:`ArchiveError`; ``dest`` is then removed.
    """
    files = list(files)
    if not files:
        raise ArchiveError("nothing uploaded")
    zips = [n for n, _ in files if n.lower().endswith(".zip")]
    if zips and len(files) > 1:
        raise ArchiveError(
            "drop either one .zip or images with their XML, not both "
            f"({len(zips)} zip(s) among {len(files)} files)",
            zips[0],
        )
    if zips:
        name, data = files[0]
        return dataset_root(extract_zip(data, dest, limits=limits, name=name))
    dest = Path(dest)
    dest.mkdir(parents=True)
    try:
        _write_files(files, dest, limits)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return dest


def dataset_root(folder: str | os.PathLike[str]) -> Path:
    """The folder a dataset loader should read: ``folder``, or its single sub-folder when it
    holds nothing else (a zip of ``my-set/`` extracts to ``folder/my-set/``).
    """
    folder = Path(folder)
    while True:
        entries = [p for p in folder.iterdir() if not _SKIPPED.search(p.name)]
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            folder = entries[0]
            continue
        return folder
