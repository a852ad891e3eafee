"""Dataset layouts (NEU flat, Kaggle mirror, VOC folder, bare images) → samples with boxes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cam_core.data.core import NEU_CLASSES, DataError, Sample
from cam_core.data.images import IMAGE_SUFFIXES
from cam_core.data.splits import SPLITS, split_samples
from cam_core.data.voc import parse_voc

LAYOUTS: tuple[str, ...] = ("neu-flat", "kaggle", "voc-folder", "images")

_STEM_NUMBER = re.compile(r"^(.+)_(\d+)$")


def file_class(stem: str, folder: str | None = None) -> str | None:
    """The class a file stands for: its NEU-DET name prefix (``rolled-in_scale_12`` →
    ``rolled-in_scale``) when that is a known class — also with the synthetic demo's ``_synth``
    infix (``crazing_synth_0007``) — else ``folder`` (a Kaggle class folder), else None.
    """
    m = _STEM_NUMBER.match(stem)
    if m:
        prefix = m.group(1).removesuffix("_synth")
        if prefix in NEU_CLASSES:
            return prefix
    return folder


@dataclass(frozen=True)
class Dataset:
    """Samples found under ``root`` (the folder actually read), sorted by stem.

    ``layout`` is one of :data:`LAYOUTS`. ``errors`` holds one :class:`DataError` per file that
    could not be used (bad XML, XML without image, duplicate stem); those images are skipped.
    """

    root: Path
    layout: str
    samples: tuple[Sample, ...]
    errors: tuple[DataError, ...] = ()

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class seen (file classes and box classes): NEU-DET order when all are NEU
        classes, else sorted.
        """
        seen = {s.label for s in self.samples if s.label is not None}
        seen |= {b.cls for s in self.samples for b in s.boxes}
        if seen <= set(NEU_CLASSES):
            return tuple(c for c in NEU_CLASSES if c in seen)
        return tuple(sorted(seen))

    def __len__(self) -> int:
        return len(self.samples)


def _subdir(folder: Path, *names: str) -> Path | None:
    """The sub-folder of ``folder`` whose name matches one of ``names``, ignoring case."""
    wanted = [n.lower() for n in names]
    found = sorted(
        (d for d in folder.iterdir() if d.is_dir() and d.name.lower() in wanted),
        key=lambda d: (wanted.index(d.name.lower()), d.name),
    )
    return found[0] if found else None


def annotation_for(image: str | Path) -> Path | None:
    """The VOC XML of one image file in any layout :func:`load_dataset` reads: beside it, in
    ``../ANNOTATIONS/`` (NEU-DET flat; ``Annotations/`` beside VOC's ``JPEGImages/``) or in the
    Kaggle layout's ``../../annotations/`` (``images/<class>/x.jpg``); None when there is none.
    """
    image = Path(image)
    name = f"{image.stem}.xml"
    folders = [
        image.parent,
        _subdir(image.parent.parent, "ANNOTATIONS"),
        _subdir(image.parent.parent.parent, "annotations"),
    ]
    for folder in folders:
        if folder is not None and (folder / name).is_file():
            return folder / name
    return None


def _files(folder: Path | None, suffixes: tuple[str, ...]) -> list[Path]:
    if folder is None:
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
    )


def _images_with_folders(images_dir: Path) -> list[tuple[Path, str | None]]:
    """Images directly in ``images_dir`` (no folder class) and in its class sub-folders."""
    found: list[tuple[Path, str | None]] = [(p, None) for p in _files(images_dir, IMAGE_SUFFIXES)]
    for sub in sorted(d for d in images_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
        found += [(p, sub.name) for p in _files(sub, IMAGE_SUFFIXES)]
    return found


def _discover(root: Path) -> tuple[Path, str, list[tuple[Path, str | None]], list[Path]]:
    """(data root, layout, images with their folder class, XML files) for a dataset folder."""
    images_dir, ann_dir = _subdir(root, "IMAGES"), _subdir(root, "ANNOTATIONS")
    if images_dir is not None:
        images = _images_with_folders(images_dir)
        xmls = _files(ann_dir, (".xml",))
        if any(folder for _, folder in images):
            return root, "kaggle", images, xmls
        return root, ("neu-flat" if ann_dir is not None else "images"), images, xmls
    parts = [
        d
        for d in sorted(root.iterdir())
        if d.is_dir() and _subdir(d, "images") and _subdir(d, "annotations")
    ]
    if parts:
        images = []
        xmls = []
        for part in parts:
            images += _images_with_folders(_subdir(part, "images"))  # type: ignore[arg-type]
            xmls += _files(_subdir(part, "annotations"), (".xml",))
        return root, "kaggle", images, xmls
    nested = _subdir(root, "NEU-DET")
    if nested is not None:
        return _discover(nested)
    images = [(p, None) for p in _files(root, IMAGE_SUFFIXES)]
    images += [(p, None) for p in _files(_subdir(root, "JPEGImages"), IMAGE_SUFFIXES)]
    xmls = _files(root, (".xml",)) + _files(_subdir(root, "Annotations"), (".xml",))
    return root, ("voc-folder" if xmls else "images"), images, xmls


def _natural_key(stem: str) -> tuple[object, ...]:
    parts = re.split(r"(\d+)", stem)
    return (*((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts), (1, 0, stem))


def load_dataset(root: str | Path, *, split: str | None = None) -> Dataset:
    """Find images and VOC boxes under ``root`` and pair them by file stem.

    Layouts: ``neu-flat`` (``IMAGES/`` + ``ANNOTATIONS/``, any case, or a folder holding
    ``NEU-DET/``), ``kaggle`` (``<part>/images/<class>/*.jpg`` + ``<part>/annotations/*.xml``
    for every part such as train/validation; the Kaggle parts are ignored by ``split``),
    ``voc-folder`` (images with same-stem XML beside them, or in ``JPEGImages/`` and
    ``Annotations/``) and ``images`` (no XML at all). Images are not decoded; ``Sample.size``
    comes from the XML. An image without XML becomes a Sample without boxes and a warning; a
    bad XML, an XML without image or a duplicate stem is recorded in ``errors`` and its image
    skipped. ``split`` None keeps all; ``"train"``, ``"val"``, ``"test"`` use
    :func:`split_samples`. Raises DataError only when ``root`` is not a folder or holds no images.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: None, {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError("not a folder", path=root)
    root, layout, images, xmls = _discover(root)
    if not images:
        raise DataError(
            "no images found (looked for IMAGES/ + ANNOTATIONS/, <part>/images/<class>/, "
            f"or {'/'.join(IMAGE_SUFFIXES)} files in the folder)",
            path=root,
        )

    errors: list[DataError] = []
    image_of: dict[str, tuple[Path, str | None]] = {}
    for path, folder in images:
        if path.stem in image_of:
            other = image_of[path.stem][0]
            errors.append(DataError(f"duplicate image stem (also {other}); skipped", path=path))
        else:
            image_of[path.stem] = (path, folder)
    xml_of: dict[str, Path] = {}
    for path in xmls:
        if path.stem in xml_of:
            errors.append(DataError(f"duplicate XML stem (also {xml_of[path.stem]})", path=path))
        else:
            xml_of[path.stem] = path
    for stem, path in xml_of.items():
        if stem not in image_of:
            errors.append(DataError(f"no image with stem {stem!r}", path=path))

    samples: list[Sample] = []
    for stem, (path, folder) in image_of.items():
        label = file_class(stem, folder)
        warnings: list[str] = []
        if folder is not None and label != folder:
            warnings.append(f"{path.name}: file name says {label!r}, folder says {folder!r}")
        xml = xml_of.get(stem)
        if xml is None:
            if layout != "images":
                warnings.append(f"{path.name}: no XML annotation found; no boxes")
            samples.append(Sample(path, stem, label, warnings=tuple(warnings)))
            continue
        try:
            ann = parse_voc(xml)
        except DataError as exc:
            errors.append(exc)
            continue
        warnings += ann.warnings
        samples.append(Sample(path, stem, label, ann.boxes, ann.size, tuple(warnings)))

    samples.sort(key=lambda s: _natural_key(s.stem))
    if split is not None:
        samples = list(split_samples(samples)[split])
    errors.sort(key=lambda e: (e.path, str(e)))
    return Dataset(root=root, layout=layout, samples=tuple(samples), errors=tuple(errors))


def find_neu_det() -> Path | None:
    """The NEU-DET folder: ``$NEU_DET_DIR`` if it exists, else ``<repo>/../shared/NEU-DET``."""
    env = os.environ.get("NEU_DET_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    shared = Path(__file__).resolve().parents[3] / "shared" / "NEU-DET"  # <repo>/../shared
    return shared if shared.is_dir() else None
