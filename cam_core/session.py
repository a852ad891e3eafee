"""What the app's pages share, without Streamlit: uploads → images with boxes, the map cache,
bundled model discovery, per-panel localization figures.

Every function here is plain Python over cam_core types, so the pages stay thin and these rules
are tested directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cam_core.data import (
    IMAGE_SUFFIXES,
    Box,
    DataError,
    Sample,
    file_class,
    load_dataset,
    parse_voc,
    read_image,
    rescale_boxes,
)
from cam_core.explain import CamError, CamResult, Explainer
from cam_core.metrics import best_box_iou, cam_to_boxes, localization_scores
from cam_core.models import ModelCard, get_arch

MAX_UPLOAD_PIXELS = 25_000_000
"""Largest uploaded image the app decodes (a 5000 × 5000 picture; NEU-DET is 200 × 200)."""
MAX_UPLOAD_BYTES = 50 << 20
"""Largest uploaded file the app reads (matches ``server.maxUploadSize`` in .streamlit)."""
SYNTHETIC_SOURCE = "synthetic demo"


@dataclass(frozen=True, eq=False)
class ImageItem:
    """One image the app can explain.

    ``key`` identifies the pixels for caches (content hash for uploads, path for files);
    ``image`` is (H, W) uint8; ``sample.boxes`` are at the image's own resolution.
    ``source`` is ``"upload"``, ``"dataset"`` or :data:`SYNTHETIC_SOURCE`.
    """

    key: str
    name: str
    image: np.ndarray
    sample: Sample
    source: str
    warnings: tuple[str, ...] = ()

    @property
    def boxes(self) -> tuple[Box, ...]:
        """All GT boxes (every class)."""
        return self.sample.boxes

    @property
    def has_annotation(self) -> bool:
        """True when boxes (possibly none) came from an annotation file."""
        return self.sample.size is not None or bool(self.sample.boxes)


@dataclass(frozen=True)
class UploadReport:
    """Outcome of one batch of uploaded files: usable images, and one message per bad file.

    Every error starts with the offending file's name.
    """

    items: tuple[ImageItem, ...]
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]


def read_uploads(
    files: Iterable[tuple[str, bytes]],
    *,
    max_pixels: int = MAX_UPLOAD_PIXELS,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> UploadReport:
    """Decode uploaded images and pair each with the VOC XML of the same file stem.

    ``files`` are (file name, content). A bad file never stops the others: unreadable, corrupt,
    empty, oversized or unsupported files, XML that is malformed or has no image of its stem,
    XML whose ``<size>`` disagrees with its image, and duplicate names each give one error
    naming the file. The image of a rejected XML is kept, without boxes.
    """
    images: dict[str, tuple[str, bytes]] = {}
    xmls: dict[str, tuple[str, bytes]] = {}
    errors: list[str] = []
    warnings: list[str] = []
    for name, data in files:
        suffix = Path(name).suffix.lower()
        stem = Path(name).stem
        if len(data) > max_bytes:
            errors.append(f"{name}: file is too large ({len(data):,} bytes; limit {max_bytes:,})")
            continue
        if suffix == ".xml":
            target = xmls
        elif suffix in IMAGE_SUFFIXES:
            target = images
        else:
            valid = ", ".join((*IMAGE_SUFFIXES, ".xml"))
            errors.append(f"{name}: unsupported file type {suffix or '(none)'!r}; use {valid}")
            continue
        if stem in target:
            errors.append(f"{name}: another uploaded file has the stem {stem!r}; ignored")
            continue
        target[stem] = (name, data)

    items: list[ImageItem] = []
    decoded: dict[str, np.ndarray] = {}
    for stem, (name, data) in images.items():
        try:
            decoded[stem] = read_image(data, name=name, max_pixels=max_pixels)
        except DataError as exc:
            errors.append(str(exc))
    for stem, (name, _) in xmls.items():
        if stem not in images:
            errors.append(
                f"{name}: no uploaded image has the stem {stem!r} "
                f"(images: {sorted(images) or 'none'}); boxes not used"
            )
    for stem, (name, data) in images.items():
        if stem not in decoded:
            if stem in xmls:
                warnings.append(f"{xmls[stem][0]}: not used, its image {name} was rejected")
            continue
        image = decoded[stem]
        boxes: tuple[Box, ...] = ()
        size: tuple[int, int] | None = None
        notes: list[str] = []
        if stem in xmls:
            xml_name, xml_data = xmls[stem]
            try:
                ann = parse_voc(xml_data, name=xml_name)
            except DataError as exc:
                errors.append(str(exc))
                ann = None
            if ann is not None and ann.size is not None and ann.size != image.shape:
                errors.append(
                    f"{xml_name}: annotates a {ann.size[1]}x{ann.size[0]} image but {name} is "
                    f"{image.shape[1]}x{image.shape[0]}: it belongs to another image; boxes "
                    "not used"
                )
            elif ann is not None:
                # re-read with the true size so boxes are clipped to this image
                ann = parse_voc(xml_data, name=xml_name, image_size=image.shape[:2])
                boxes, size = ann.boxes, image.shape[:2]
                notes += ann.warnings
                tag = Path(ann.filename).stem if ann.filename else None
                if tag and tag != stem:
                    notes.append(f"{xml_name}: <filename> says {ann.filename!r}, paired by stem")
        sample = Sample(Path(name), stem, file_class(stem), boxes, size, tuple(notes))
        items.append(
            ImageItem(f"upload:{_digest(data)}:{name}", name, image, sample, "upload", tuple(notes))
        )
        warnings += notes
    return UploadReport(tuple(items), tuple(errors), tuple(warnings))


def item_from_sample(sample: Sample, *, source: str = "dataset") -> ImageItem:
    """Read a dataset sample's image; its boxes are moved to the decoded size when the XML's
    ``<size>`` differs (with a warning). Raises DataError naming the file.
    """
    image = read_image(sample.path)
    boxes, notes = sample.boxes, list(sample.warnings)
    if sample.size is not None and sample.size != image.shape:
        boxes = rescale_boxes(boxes, sample.size, image.shape[:2])
        notes.append(
            f"{sample.path.name}: XML size {sample.size[1]}x{sample.size[0]} differs from the "
            f"image {image.shape[1]}x{image.shape[0]}; boxes rescaled"
        )
    sample = Sample(sample.path, sample.stem, sample.label, boxes, image.shape[:2], tuple(notes))
    return ImageItem(f"file:{sample.path}", sample.path.name, image, sample, source, tuple(notes))


def synthetic_folder(n_per_class: int = 3, seed: int = 7, root: str | Path | None = None) -> Path:
    """A synthetic NEU-like VOC folder (written once, reused): for the demo without data.

    Lives under ``root`` (default: the system temp folder), named by ``n_per_class`` and ``seed``.
    """
    from cam_core.synth import write_voc_folder

    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    out = base / f"cam-core-synthetic-{n_per_class}x-seed{seed}"
    done = out / ".complete"
    if not done.exists():
        tmp = Path(tempfile.mkdtemp(prefix=out.name + "-", dir=base))
        write_voc_folder(tmp, n_per_class, seed)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.replace(tmp, out)
        except OSError:  # another session wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def synthetic_samples(n_per_class: int = 3, seed: int = 7) -> tuple[Sample, ...]:
    """The samples of :func:`synthetic_folder` (boxes from their XML)."""
    return load_dataset(synthetic_folder(n_per_class, seed)).samples


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from: a checkpoint ``path`` plus overrides for one without a card."""

    label: str
    path: str
    arch: str | None = None
    classes: tuple[str, ...] | None = None
    multilabel: bool | None = None
    synthetic: bool = False

    @property
    def model_id(self) -> str:
        """Cache key: path, overrides and the file's modification time."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            mtime = 0
        return f"{self.path}|{self.arch}|{self.classes}|{self.multilabel}|{mtime}"


_CHECKPOINT_NAMES = ("model.pt", "model.safetensors", "model.pth")


def bundled_models(models_dir: str | Path) -> list[ModelRef]:
    """Models shipped in ``models_dir/<name>/`` (a checkpoint with its ``model.json`` card).

    Order (the first real-data one is the app's default): real data before synthetic,
    single-label before multi-label, then the better recommended map on the calibration split
    (the card's auto-configuration score: a model is chosen for where it looks as well as for
    what it says), then the higher validation accuracy, then the name.
    """
    refs = []
    base = Path(models_dir)
    if not base.is_dir():
        return []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        ckpt = next((folder / n for n in _CHECKPOINT_NAMES if (folder / n).is_file()), None)
        card_file = folder / "model.json"
        if ckpt is None or not card_file.is_file():
            continue
        try:
            card = json.loads(card_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            card = {}
        synthetic = bool(card.get("synthetic")) or "synth" in folder.name
        label = folder.name + (" (synthetic demo)" if synthetic else "")
        try:
            accuracy = float(card["metrics"]["val"]["accuracy"])
        except (KeyError, TypeError, ValueError):
            accuracy = 0.0
        try:
            localization = float(card["recommended"]["score"])
        except (KeyError, TypeError, ValueError):
            localization = 0.0
        rank = (synthetic, bool(card.get("multilabel")), -localization, -accuracy, label)
        refs.append((rank, ModelRef(label, str(ckpt), synthetic=synthetic)))
    return [ref for _, ref in sorted(refs, key=lambda pair: pair[0])]


UPLOAD_DIR = Path(tempfile.gettempdir()) / "cam-core-uploads"
"""Where uploaded checkpoints are stored for loading (one sub-folder per content hash)."""


def safe_name(name: str) -> str:
    """``name`` reduced to letters, digits, ``._-`` (a file or folder name that is safe to use)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".") or "upload"


def save_upload(name: str, data: bytes, folder: str | Path | None = None) -> Path:
    """Write uploaded bytes to ``folder/<content hash>/<name>`` (default :data:`UPLOAD_DIR`).

    The original file name is kept so error messages name it.
    """
    base = Path(folder) if folder is not None else UPLOAD_DIR
    out = base / _digest(data) / safe_name(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.stat().st_size != len(data):
        out.write_bytes(data)
    return out


def uploaded_model(
    checkpoint: tuple[str, bytes],
    *,
    card_json: tuple[str, bytes] | None = None,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    multilabel: bool = False,
    folder: str | Path | None = None,
) -> ModelRef:
    """Store an uploaded checkpoint (and its card as ``<stem>.json`` beside it) for
    :func:`cam_core.models.load_model`. Without a card, ``classes`` are required.

    Raises ValueError naming the file for an unreadable card or missing class names.
    """
    name, data = checkpoint
    path = save_upload(name, data, folder)
    card_path = path.with_suffix(".json")
    if card_json is not None:
        card_name, card_bytes = card_json
        try:
            ModelCard.from_json(card_bytes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{card_name}: not a model card: {exc}") from None
        card_path.write_bytes(card_bytes)
        return ModelRef(f"{name} (uploaded)", str(path))
    card_path.unlink(missing_ok=True)
    names = tuple(c.strip() for c in (classes or ()) if c.strip())
    if not names:
        raise ValueError(f"{name}: no model card given, so class names are needed (output order)")
    return ModelRef(
        f"{name} (uploaded)", str(path), arch=arch, classes=names, multilabel=multilabel
    )


def name_in_message(message: str, folder: str | Path | None = None) -> str:
    """``message`` with the storage folder of :func:`save_upload` removed from file paths, so
    it names the file as the user uploaded it.
    """
    base = re.escape(str(Path(folder) if folder is not None else UPLOAD_DIR))
    return re.sub(base + r"/[0-9a-f]{16}/", "", message)


def layer_options(card: ModelCard) -> list[str]:
    """CAM layers to offer for a model: the recommended one (auto-configuration) first, then
    the card's own, then its architecture's.
    """
    options = [str(card.recommended["layer"])] if card.recommended else []
    options += [card.target_layer] if card.target_layer else []
    with contextlib.suppress(KeyError):
        options += list(get_arch(card.arch).target_layers)
    return list(dict.fromkeys(options)) or ["layer4"]


def recommended_caption(card: ModelCard) -> str | None:
    """One line on the card's auto-configured method × layer and its calibration figures."""
    rec = card.recommended
    if not rec:
        return None
    fig = rec.get("figures", {})
    base = rec.get("baselines", {}).get("baseline:centre", {})
    cal = rec.get("calibration", {})
    parts = [
        f"pointing {fig['pointing']:.2f}" if "pointing" in fig else "",
        f"energy {fig['energy']:.2f}" if "energy" in fig else "",
        f"centre-point baseline {base['pointing']:.2f}" if "pointing" in base else "",
    ]
    figures = " · ".join(p for p in parts if p)
    flips = " with flip averaging" if rec.get("flips") else ""
    return (
        f"Recommended: {rec.get('method')} @ {rec.get('layer')}{flips}, map→box threshold "
        f"{rec.get('threshold')}; {figures} on {cal.get('split', '?')} (n={cal.get('n', '?')})"
    )


# --------------------------------------------------------------------------- maps

MapKey = tuple[str, str, str, str, bool, int]
"""(model id, image key, method, layer, flip averaging, class index)."""


@dataclass
class MapCache:
    """Maps and class scores already computed, each bounded to ``capacity`` entries (oldest
    dropped), so a session that browses thousands of images holds at most ``capacity`` of each.

    Kept in the browser session so moving a slider never recomputes a map.
    """

    capacity: int = 400
    maps: dict[MapKey, CamResult] = field(default_factory=dict)
    probs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def put(self, key: MapKey, result: CamResult) -> None:
        """Store one map as the newest entry."""
        self._put(self.maps, key, result)

    def put_probs(self, key: tuple[str, str], probs: np.ndarray) -> None:
        """Store one image's class scores as the newest entry."""
        self._put(self.probs, key, probs)

    def _put(self, store: dict, key: object, value: object) -> None:
        store.pop(key, None)
        store[key] = value
        while len(store) > self.capacity:
            store.pop(next(iter(store)))


def cache_in(store: MutableMapping[str, object], key: str = "map_cache") -> MapCache:
    """The :class:`MapCache` kept in ``store`` (e.g. ``st.session_state``), created on first use."""
    cache = store.get(key)
    if not isinstance(cache, MapCache):
        cache = MapCache(capacity=map_cache_capacity())
        store[key] = cache
    return cache


def map_cache_capacity(default: int = MapCache.capacity) -> int:
    """Maps kept per browser session: ``$CAM_CORE_MAP_CACHE`` when set to a positive integer."""
    raw = os.environ.get("CAM_CORE_MAP_CACHE", "")
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def class_scores(
    explainer: Explainer, model_id: str, item: ImageItem, cache: MapCache
) -> np.ndarray:
    """(K,) class probabilities of ``item`` (cached)."""
    key = (model_id, item.key)
    if key not in cache.probs:
        cache.put_probs(key, explainer.predict([item.image])[0])
    return cache.probs[key]


def compute_maps(
    explainer: Explainer,
    model_id: str,
    item: ImageItem,
    methods: Sequence[str],
    classes: Sequence[int],
    layer: str,
    cache: MapCache,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    flip_smooth: bool = False,
) -> tuple[dict[tuple[str, int], CamResult], dict[str, str]]:
    """Maps of ``item`` for every (method, class index), computing only those not cached;
    ``flip_smooth`` as in :meth:`Explainer.explain` (cached apart from the plain maps).

    Returns (maps, errors): a method that fails (e.g. CAM on a head it does not apply to) is left
    out of ``maps`` and ``errors[method]`` says why; the others still run. Each method is one
    engine call so ``progress(done, total, method)`` moves per method.
    """

    def key(method: str, c: int) -> MapKey:
        return (model_id, item.key, method, layer, flip_smooth, c)

    missing = [m for m in methods if any(key(m, c) not in cache.maps for c in classes)]
    errors: dict[str, str] = {}
    for done, method in enumerate(missing):
        if progress is not None:
            progress(done, len(missing), method)
        try:
            result = explainer.explain(
                [item.image],
                [method],
                targets=[list(classes)],
                layers=layer,
                flip_smooth=flip_smooth,
            )
        except (CamError, KeyError, ValueError, RuntimeError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            errors[method] = f"{method}: {text}"
            continue
        for r in result.results:
            cache.put(key(method, r.class_index), r)
    if progress is not None and missing:
        progress(len(missing), len(missing), "done")
    maps = {
        (m, c): cache.maps[key(m, c)]
        for m in methods
        if m not in errors
        for c in classes
        if key(m, c) in cache.maps
    }
    return maps, errors


@dataclass(frozen=True)
class PanelScores:
    """Localization figures of one map against the GT boxes of its class.

    ``scores`` is :func:`cam_core.metrics.localization_scores` (all None without GT boxes);
    ``cam_boxes`` are the map's thresholded regions, ``cam_box_ious`` their best IoU with a GT box
    of the class (None without GT).
    """

    scores: dict[str, float | bool | None]
    cam_boxes: tuple[tuple[float, float, float, float, float], ...]
    cam_box_ious: tuple[float | None, ...]

    def labels(self) -> list[str]:
        """Text for each map box: its IoU with GT, or its mean map value without GT."""
        return [
            f"IoU {iou:.2f}" if iou is not None else f"map {box[4]:.2f}"
            for box, iou in zip(self.cam_boxes, self.cam_box_ious, strict=True)
        ]


def panel_scores(
    cam: np.ndarray, gt_boxes: Sequence[Box], *, threshold: float | str = 0.5, max_boxes: int = 5
) -> PanelScores:
    """Figures for one heatmap panel; ``threshold`` as :func:`cam_core.metrics.cam_to_boxes`
    (it is also the pixel-IoU level τ when numeric). The ``max_boxes`` best map boxes are kept.
    """
    tau = float(threshold) if not isinstance(threshold, str) else 0.5
    gt = list(gt_boxes)
    scores = localization_scores(cam, gt, tau=tau)
    found = cam_to_boxes(cam, threshold)  # type: ignore[arg-type]
    if gt:
        scores["box_iou"] = best_box_iou(found, gt)
    boxes = tuple(tuple(float(v) for v in b) for b in found[:max_boxes])
    ious = tuple(best_box_iou([b], gt) if gt else None for b in boxes)
    return PanelScores(scores, boxes, ious)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- evaluation


ROW_FIGURE: dict[str, str] = {"maxboxacc_v2": "box_iou", "pxap": "iou"}
"""Dataset-level metrics (no per-row value) → the per-row figure worst cases are ranked by:
MaxBoxAccV2 counts map boxes that overlap a GT box, so its rows rank by their best map-box IoU
at τ; PxAP scores map pixels against box pixels, so its rows rank by their pixel IoU at τ."""


def ranking_figure(metric: str) -> str:
    """The per-row column :func:`worst_cases` ranks ``metric`` by (itself for per-row ones)."""
    return ROW_FIGURE.get(metric, metric)


def worst_cases(rows: pd.DataFrame, metric: str = "energy", n: int = 10) -> pd.DataFrame:
    """The ``n`` scoreable method rows (no baselines, no errors) with the lowest ``metric``.

    ``rows`` is :meth:`cam_core.evaluate.EvalResult.rows_frame`. A dataset-level metric is
    ranked by its per-row figure (:data:`ROW_FIGURE`). Ties are broken by energy in the boxes;
    the result keeps stem, class, method, layer, the figures, score and correct.
    """
    column = ranking_figure(metric)
    if column not in rows.columns:
        valid = [c for c in rows.columns if c in ROW_FIGURE.values()] + list(ROW_FIGURE)
        raise KeyError(f"Unknown metric {metric!r}; valid: {sorted(set(valid))} or a row column")
    keep = rows[~rows["method"].astype(str).str.startswith("baseline:")]
    keep = keep[keep["error"].isna() & keep[column].notna()]
    keep = keep.assign(**{column: keep[column].astype(float)})
    by = [column] + (["energy"] if column != "energy" else [])
    columns = ["stem", "class", "method", "layer", "pointing", "energy", "iou", "score", "correct"]
    columns = list(dict.fromkeys([*columns[:4], column, *columns[4:]]))
    return keep.sort_values(by, kind="stable").head(n)[columns].reset_index(drop=True)
