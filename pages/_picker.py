"""The image picker of the image pages (Explore, Compare): the source choice (uploads, dataset,
synthetic demo, an image opened from Evaluate), the uploads UI, and the dataset gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from cam_core import data
from cam_core.catalogue import BOX_THRESHOLDS, recommended_threshold
from cam_core.explain import Explainer
from cam_core.mapcache import (
    MapCache,
    cache_in,
    class_scores,
    compute_maps,
    default_classes,
    first_hit,
    missing_methods,
)
from cam_core.uploads import (
    SYNTHETIC_SOURCE,
    ImageItem,
    UploadReport,
    merge_uploads,
    read_uploads,
)
from pages._sidebar import app_state
from pages._state import (
    AppState,
    demo_samples,
    index_of,
    item_for,
    pref,
    remember,
    require_explainer,
    set_pref,
    short_key,
    thumbnail_png,
)

SOURCE_UPLOAD, SOURCE_DATASET, SOURCE_DEMO, SOURCE_PICKED = (
    "Upload",
    "Dataset",
    "Synthetic demo",
    "Picked in Evaluate",
)


def _uploader_key(page: str) -> str:
    # A new key after each batch empties the drop zone: the session's list is what counts.
    return f"{page}_uploads_{st.session_state.get('upload_round', 0)}"


def _on_upload(page: str) -> None:
    files = st.session_state.get(_uploader_key(page)) or []
    report = read_uploads((f.name, f.getvalue()) for f in files)
    st.session_state["upload_report"] = report
    st.session_state["uploaded_items"] = merge_uploads(uploaded_items(), report.items)
    st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1
    if report.items:
        set_pref("img_source", SOURCE_UPLOAD)
        set_pref("upload_choice", report.items[0].key)


def _remove_upload(key: str) -> None:
    st.session_state["uploaded_items"] = tuple(i for i in uploaded_items() if i.key != key)


def upload_report() -> UploadReport | None:
    """The last batch of uploads read on the Explore page (its problems are shown)."""
    report = st.session_state.get("upload_report")
    return report if isinstance(report, UploadReport) else None


def uploaded_items() -> tuple[ImageItem, ...]:
    """Every image uploaded in this browser session and not removed (one per content)."""
    return tuple(st.session_state.get("uploaded_items", ()))


def show_upload_problems(report: UploadReport) -> None:
    """One error per bad file, naming it; warnings folded away."""
    for message in report.errors:
        st.error(message, icon=":material/block:")
    if report.warnings:
        with st.expander(f"{len(report.warnings)} annotation note(s)"):
            for w in report.warnings:
                st.caption(w)


def _sources(state: AppState, report: UploadReport | None) -> list[str]:
    sources = [SOURCE_UPLOAD]
    if state.dataset is not None:
        sources.append(SOURCE_DATASET)
    sources.append(SOURCE_DEMO)
    if "picked_sample" in st.session_state:
        sources.append(SOURCE_PICKED)
    return sources


@dataclass(frozen=True)
class ImagePage:
    """What an image page (Explore, Compare) starts from: the chosen image and its scores."""

    state: AppState
    explainer: Explainer
    item: ImageItem
    cache: MapCache
    probs: Any  # (K,) class probabilities
    default_classes: list[str]  # predicted + GT classes (cam_core.mapcache.default_classes)

    def missing(self, methods: Sequence[str], classes: Sequence[int]) -> list[str]:
        """The ``methods`` with a map of ``classes`` still to compute (not cached)."""
        s = self.state
        return missing_methods(
            s.model_id, self.item, methods, classes, s.layer, self.cache, flip_smooth=s.flips
        )

    def maps(
        self, methods: Sequence[str], classes: Sequence[int], progress: Any = None
    ) -> tuple[dict[tuple[str, int], Any], dict[str, str]]:
        """:func:`compute_maps` of this image at the sidebar's layer and flip setting."""
        s = self.state
        return compute_maps(
            self.explainer,
            s.model_id,
            self.item,
            methods,
            classes,
            s.layer,
            self.cache,
            progress,
            flip_smooth=s.flips,
        )


def open_image_page(title: str, caption: str, page: str, *, allow_upload: bool) -> ImagePage:
    """Title, model check and image picker shared by the image pages; stops the page when there
    is no model or no image yet."""
    state = app_state()
    st.title(title)
    st.caption(caption)
    explainer = require_explainer(state)
    item = image_picker(state, page, allow_upload=allow_upload)
    if item is None:
        st.stop()
    _model_meets_data(state, item)
    cache = cache_in(st.session_state)
    probs = class_scores(explainer, state.model_id, item, cache)
    default = default_classes(explainer, item, probs)
    return ImagePage(state, explainer, item, cache, probs, default)


def _model_meets_data(state: AppState, item: ImageItem) -> None:
    """Warn when a synthetic-demo model explains a real image, or a real-data model a drawn one."""
    label = state.model_ref.label if state.model_ref else "the model"
    drawn = item.source == SYNTHETIC_SOURCE
    if state.synthetic_model and not drawn:
        st.warning(
            f"**{label}** was trained on synthetic images and {item.name} is real steel: its "
            "predictions and maps say little about it. Pick a real-data model in the sidebar.",
            icon=":material/warning:",
        )
    elif drawn and not state.synthetic_model:
        st.warning(
            f"{item.name} is a synthetic demo image and **{label}** was trained on real steel: "
            "read its maps as a demo only.",
            icon=":material/warning:",
        )


def image_picker(state: AppState, page: str, *, allow_upload: bool) -> ImageItem | None:
    """Source choice (uploads, dataset, synthetic demo) and one image from it.

    ``page`` prefixes the widget keys; the choices themselves are shared between pages.
    """
    report = upload_report()
    sources = _sources(state, report)
    fallback = SOURCE_DATASET if state.dataset else SOURCE_DEMO
    key = f"{page}_img_source"
    root = str(state.data_root) if state.dataset is not None else ""
    seen = st.session_state.get("_picker_data_root")
    st.session_state["_picker_data_root"] = root
    if seen is not None and root and root != seen:
        # a dataset folder was just typed: show its images, in the control as on the page
        set_pref("img_source", SOURCE_DATASET)
        st.session_state.pop(key, None)
    wanted = pref("img_source", fallback)
    _show_in_widget(key, sources, wanted if wanted in sources else fallback)
    source = st.segmented_control(
        "Image source",
        sources,
        key=key,
        on_change=remember,
        args=(key, "img_source"),
        label_visibility="collapsed",
    )
    source = source or fallback
    if source == SOURCE_UPLOAD:
        return _upload_picker(report, page, allow_upload)
    chooser = _representative(state)
    if source == SOURCE_PICKED:
        sample, where = st.session_state["picked_sample"]
        st.caption(f"Opened from {where}.")
        try:
            return item_for(sample, "dataset")
        except data.DataError as exc:
            st.error(str(exc))
            return None
    if source == SOURCE_DATASET and state.dataset is not None:
        label = f"{state.data_label} · split {state.split}"
        return _gallery(state.samples, "dataset", label, page, chooser)
    st.caption("**Synthetic demo**: generated images with known defect boxes; not real steel.")
    return _gallery(demo_samples(), SYNTHETIC_SOURCE, "synthetic demo", page, chooser)


def _representative(state: AppState) -> Any:
    """A function picking the image to open a gallery on: the first where the model's
    recommended map (its first method otherwise) of the predicted class hits a GT box."""
    explainer = state.explainer
    if explainer is None:
        return None
    rec = explainer.card.recommendation
    method = rec.method if rec is not None else (state.methods or ["gradcam"])[0]
    threshold = recommended_threshold(explainer.card, BOX_THRESHOLDS)

    def choose(samples: Sequence[data.Sample], source: str) -> str | None:
        items = (item_for(s, source) for s in samples if s.boxes)
        try:
            hit = first_hit(
                explainer,
                state.model_id,
                items,
                method,
                state.layer,
                cache_in(st.session_state),
                flip_smooth=state.flips,
                threshold=threshold,
            )
        except (data.DataError, ValueError, KeyError, RuntimeError):
            return None
        return hit.sample.stem if hit is not None else None

    return choose


def _upload_picker(report: UploadReport | None, page: str, allow_upload: bool) -> ImageItem | None:
    if allow_upload:
        st.file_uploader(
            "Images (JPG/PNG/BMP/TIFF) and, optionally, their VOC XML files (paired by file name)",
            type=[s.lstrip(".") for s in data.IMAGE_SUFFIXES] + ["xml"],
            accept_multiple_files=True,
            key=_uploader_key(page),
            on_change=_on_upload,
            args=(page,),
            help="Each batch is added to the images uploaded before (the same image once).",
        )
    if report is not None:
        show_upload_problems(report)
    items = uploaded_items()
    if not items:
        st.info(
            "Drop one or more images (and their XML annotations) above."
            if allow_upload
            else "No uploads yet: add images on the Explore page."
        )
        return None
    by_key = {i.key: i for i in items}
    keys = list(by_key)
    # The key follows the list, so a changed list starts the box on the remembered choice
    # (the image drawn) rather than on a stale browser-side value.
    key = f"{page}_upload_choice_{short_key(*keys)}"
    chosen = st.selectbox(
        f"Uploaded image ({len(keys)} in this session)",
        keys,
        index=index_of(keys, pref("upload_choice", keys[-1]), len(keys) - 1),
        key=key,
        format_func=lambda k: by_key[k].name,
        on_change=remember,
        args=(key, "upload_choice"),
    )
    with st.expander(f"Uploaded images ({len(keys)})"):
        for item in items:
            name, remove = st.columns([4, 1], vertical_alignment="center")
            boxes = f"{len(item.boxes)} GT box(es)" if item.has_annotation else "no annotation"
            name.caption(f"{item.name} · {boxes}")
            remove.button(
                "Remove",
                key=f"{page}_remove_{short_key(item.key)}",
                on_click=_remove_upload,
                args=(item.key,),
                icon=":material/delete:",
                type="tertiary",
            )
    return by_key[chosen]


def _gallery(
    samples: tuple[data.Sample, ...], source: str, where: str, page: str, chooser: Any = None
) -> ImageItem | None:
    if not samples:
        st.warning(f"No images in {where}.")
        return None
    classes = sorted(
        {s.label for s in samples if s.label} | {b.cls for s in samples for b in s.boxes}
    )
    left, right = st.columns([1, 2])
    key = f"{page}_gallery_classes"
    chosen = left.multiselect(
        "Filter by class",
        classes,
        default=[c for c in pref("gallery_classes", []) if c in classes],
        key=key,
        on_change=remember,
        args=(key, "gallery_classes"),
        placeholder="all classes",
    )
    shown = [s for s in samples if not chosen or set(chosen) & ({s.label} | set(s.labels))]
    if not shown:
        st.warning("No image has the chosen classes.")
        return None
    stems = [s.stem for s in shown]
    key = f"{page}_image_stem"
    if pref("image_stem", None) not in stems:
        # first look at this gallery: open on a representative image, not just the first
        picked = chooser(shown, source) if chooser is not None else None
        set_pref("image_stem", picked if picked is not None else stems[0])
        st.session_state.pop(key, None)
    _show_in_widget(key, stems, pref("image_stem", stems[0]))
    stem = right.selectbox(
        f"Image ({len(shown)} in {where})",
        stems,
        key=key,
        on_change=remember,
        args=(key, "image_stem"),
    )
    # collapsed again by a pick (_open), so the new maps come into view
    with st.expander("Gallery", key=f"{key}_gallery", on_change="rerun"):
        _thumbnails(shown, key)
    sample = shown[stems.index(stem)]
    try:
        return item_for(sample, source)
    except data.DataError as exc:
        st.error(str(exc))
        return None


def _show_in_widget(key: str, options: Sequence[Any], value: Any) -> None:
    """Make the keyed widget drawn next show ``value`` when it holds no valid option (new, or
    its options changed). Set through the session state, not as a default, so the browser
    shows it too: a default does not replace a value the browser still holds (the QA walk saw
    "crazing_synth_0000" selected while a dataset image was drawn)."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = value


def _open(stem: str, widget_key: str) -> None:
    set_pref("image_stem", stem)
    st.session_state[widget_key] = stem
    st.session_state[f"{widget_key}_gallery"] = False


def _thumbnails(
    shown: list[data.Sample], stem_key: str, per_page: int = 18, per_row: int = 6
) -> None:
    pages = max(1, -(-len(shown) // per_page))
    page = 1
    if pages > 1:
        left, right = st.columns([1, 3], vertical_alignment="bottom")
        page = int(
            left.number_input(f"Gallery page (of {pages})", 1, pages, 1, key=f"{stem_key}_page")
        )
        right.caption(f"page {page} of {pages} · {len(shown)} images")
    chunk = shown[(page - 1) * per_page : page * per_page]
    for row in range(0, len(chunk), per_row):
        cols = st.columns(per_row)
        for col, sample in zip(cols, chunk[row : row + per_row], strict=False):
            with col:
                try:
                    st.image(thumbnail_png(str(sample.path), sample), width="stretch")
                except data.DataError as exc:
                    st.caption(f":material/warning: {exc}")
                st.button(
                    sample.stem,
                    key=f"{stem_key}_open_{sample.stem}",
                    on_click=_open,
                    args=(sample.stem, stem_key),
                    width="stretch",
                    type="tertiary",
                )
