"""Streamlit pieces every page shares: the sidebar state, cached model/dataset loading, the image
picker. Computation lives in cam_core; this module only wires widgets to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from cam_core import data, render, session
from cam_core.explain import Explainer
from cam_core.methods import METHODS
from cam_core.models import CheckpointError, ModelCard, load_model

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
RUNS_DIR = ROOT / "runs"
"""Where the Models page writes quick training runs (git-ignored)."""
SPLITS = ("test", "val", "train", "all")
DEFAULT_METHODS = ("gradcam", "gradcam++")
SOURCE_UPLOAD, SOURCE_DATASET, SOURCE_DEMO, SOURCE_PICKED = (
    "Upload",
    "Dataset",
    "Synthetic demo",
    "Picked in Evaluate",
)


@dataclass
class AppState:
    """What the sidebar decided for this run."""

    models: list[session.ModelRef]
    model_ref: session.ModelRef | None = None
    explainer: Explainer | None = None
    model_error: str | None = None
    data_root: Path | None = None
    dataset: data.Dataset | None = None
    data_error: str | None = None
    split: str = "test"
    methods: list[str] = field(default_factory=list)
    layer: str = ""
    flips: bool = False

    @property
    def card(self) -> ModelCard | None:
        return self.explainer.card if self.explainer else None

    @property
    def model_id(self) -> str:
        return self.model_ref.model_id if self.model_ref else ""

    @property
    def samples(self) -> tuple[data.Sample, ...]:
        return self.dataset.samples if self.dataset else ()


# --------------------------------------------------------------------------- cached loading


@st.cache_resource(max_entries=3, show_spinner="Loading model…")
def _load(
    path: str,
    arch: str | None,
    classes: tuple[str, ...] | None,
    multilabel: bool | None,
    model_id: str,
) -> tuple[object, ModelCard]:
    loaded = load_model(path, arch=arch, classes=classes, multilabel=multilabel)
    return loaded.model, loaded.card


def load_explainer(ref: session.ModelRef) -> Explainer:
    """The cached model of ``ref`` wrapped in an engine (the engine holds the model's lock)."""
    model, card = _load(ref.path, ref.arch, ref.classes, ref.multilabel, ref.model_id)
    return Explainer(model, card)  # type: ignore[arg-type]


@st.cache_resource(max_entries=4, show_spinner="Reading dataset…")
def _dataset(root: str, split: str | None, mtime: float) -> data.Dataset:
    return data.load_dataset(root, split=split)


def load_dataset(root: Path, split: str) -> data.Dataset:
    """Cached :func:`cam_core.data.load_dataset` (refreshed when the folder changes)."""
    return _dataset(str(root), None if split == "all" else split, root.stat().st_mtime)


@st.cache_resource(max_entries=8, show_spinner="Writing the synthetic demo images…")
def demo_samples() -> tuple[data.Sample, ...]:
    """The synthetic demo set (3 images per class, generated once per server)."""
    return session.synthetic_samples(3, 7)


@st.cache_resource(max_entries=64)
def _item(path: str, sample: data.Sample, source: str) -> session.ImageItem:
    return session.item_from_sample(sample, source=source)


def item_for(sample: data.Sample, source: str) -> session.ImageItem:
    """The decoded image of a sample (cached per server)."""
    return _item(str(sample.path), sample, source)


@st.cache_data(max_entries=512, show_spinner=False)
def _thumb(path: str, _sample: data.Sample) -> bytes:
    item = session.item_from_sample(_sample)
    return render.png_bytes(render.thumbnail(item.image, item.boxes, side=120))


# --------------------------------------------------------------------------- sidebar


def pref(name: str, fallback: Any) -> Any:
    """The user's last choice for ``name`` (shared by every page), else ``fallback``.

    Page widgets take their starting value from here and store changes back through
    :func:`remember`: Streamlit forgets a widget's value when a run does not draw it (another
    page, an early stop), and a value pushed into the session state for a widget that is not
    drawn does not reach the browser.
    """
    return st.session_state.get(f"_pref_{name}", fallback)


def set_pref(name: str, value: object) -> None:
    """Record a choice for ``name`` (the widgets drawing it next start from it)."""
    st.session_state[f"_pref_{name}"] = value


def remember(widget_key: str, name: str) -> None:
    """on_change callback: the widget's new value becomes the preference ``name``."""
    set_pref(name, st.session_state[widget_key])


def index_of(options: Sequence[Any], value: object, fallback: int = 0) -> int:
    """Position of ``value`` in ``options``, else ``fallback``."""
    return list(options).index(value) if value in options else fallback


def _default_model(refs: list[session.ModelRef], have_data: bool) -> int:
    for i, ref in enumerate(refs):
        if ref.synthetic != have_data:
            return i
    return 0


def sidebar() -> AppState:
    """Draw the shared sidebar (model, data, methods, layer) and return what it says."""
    refs = session.bundled_models(MODELS_DIR) + list(st.session_state.get("uploaded_models", []))
    state = AppState(models=refs)
    sb = st.sidebar
    sb.markdown("### Model")
    if "dataset_dir_default" not in st.session_state:
        found = data.find_neu_det()
        # Shown relative to the working folder when it is near (e.g. ../shared/NEU-DET).
        shown = (
            os.path.relpath(found)
            if found and not os.path.relpath(found).startswith("../../")
            else found
        )
        st.session_state["dataset_dir_default"] = str(shown) if found else ""
    dataset_default = st.session_state["dataset_dir_default"]
    have_data = bool(st.session_state.get("dataset_dir", dataset_default).strip())
    if refs:
        labels = [r.label for r in refs]
        pending = st.session_state.pop("pending_model_choice", None)
        if pending in labels:
            st.session_state["model_choice"] = pending
        if st.session_state.get("model_choice") not in labels:
            st.session_state["model_choice"] = labels[_default_model(refs, have_data)]
        choice = sb.selectbox("Model", labels, key="model_choice", label_visibility="collapsed")
        state.model_ref = refs[labels.index(choice)]
        try:
            state.explainer = load_explainer(state.model_ref)
        except (CheckpointError, ValueError, KeyError, OSError) as exc:
            state.model_error = str(exc.args[0] if isinstance(exc, KeyError) else exc)
            sb.error(f"{state.model_ref.label}: {state.model_error}")
    else:
        state.model_error = f"no model found in {MODELS_DIR}; add one on the Models page"
        sb.warning(state.model_error)
    if state.card is not None:
        card = state.card
        kind = "multi-label" if card.multilabel else "single-label"
        synthetic = " · **synthetic**" if card.synthetic or state.model_ref.synthetic else ""
        sb.caption(
            f"`{card.arch}` · {len(card.classes)} classes · {kind} · "
            f"{card.input_size} px{synthetic}"
        )

    sb.markdown("### Data")
    sb.text_input(
        "Dataset folder",
        value=dataset_default,
        key="dataset_dir",
        help="NEU-DET root (IMAGES/ + ANNOTATIONS/, or the Kaggle layout) or a VOC folder. "
        "Empty: the synthetic demo images.",
        placeholder="empty: synthetic demo",
    )
    state.split = sb.selectbox(
        "Split", SPLITS, key="split", help="Deterministic 70/15/15 split by file-name hash."
    )
    root = (st.session_state.get("dataset_dir") or "").strip()
    if root:
        state.data_root = Path(root).expanduser()
        try:
            state.dataset = load_dataset(state.data_root, state.split)
            ds = state.dataset
            bad = f" · {len(ds.errors)} files skipped" if ds.errors else ""
            sb.caption(f"{len(ds)} images ({ds.layout} layout){bad}")
        except (data.DataError, OSError) as exc:
            state.data_error = str(exc)
            sb.error(state.data_error)
    else:
        sb.caption("No dataset: the **synthetic demo** images are used.")

    sb.markdown("### Methods")
    labels = {name: spec.label + (" (slow)" if spec.slow else "") for name, spec in METHODS.items()}
    rec = state.card.recommended if state.card is not None else None
    first = [rec["method"]] if rec and rec.get("method") in METHODS else []
    state.methods = sb.multiselect(
        "CAM methods",
        list(METHODS),
        # A widget default, not a pre-set session_state value: the latter is dropped by
        # Streamlit on the session's first rerun (tests/e2e/test_load.py).
        default=[*dict.fromkeys([*DEFAULT_METHODS, *first])],
        key="methods",
        format_func=labels.__getitem__,
        help="Shown side by side on Explore; swept on Evaluate.",
    )
    if state.card is not None:
        layers = session.layer_options(state.card)
        if st.session_state.get("layer") not in layers:
            st.session_state["layer"] = layers[0]
        state.layer = sb.selectbox("Target layer", layers, key="layer")
        state.flips = sb.toggle(
            "Flip averaging",
            # one key per model, so each model starts from its own recommendation
            value=bool((rec or {}).get("flips")),
            key=f"flips_{short_key(state.model_id)}",
            help="Average each map over the four flips of the image (4× the work). A map's "
            "habit of peaking in the same place whatever the image averages out; evidence on "
            "the defect moves with it and stays.",
        )
        note = session.recommended_caption(state.card)
        if note:
            sb.caption(note)
    st.session_state["app_state"] = state
    return state


def app_state() -> AppState:
    """The state the sidebar set for this run."""
    state = st.session_state.get("app_state")
    return state if isinstance(state, AppState) else sidebar()


def require_explainer(state: AppState) -> Explainer:
    """The engine, or an explanation of what is missing and the end of the page."""
    if state.explainer is None:
        st.error(f"No model to explain with: {state.model_error or 'none selected'}.")
        st.page_link(
            "pages/models.py", label="Open the Models page", icon=":material/model_training:"
        )
        st.stop()
    return state.explainer


# --------------------------------------------------------------------------- images


def _on_upload(page: str) -> None:
    files = st.session_state.get(f"{page}_uploads") or []
    report = session.read_uploads((f.name, f.getvalue()) for f in files)
    st.session_state["upload_report"] = report
    if report.items:
        set_pref("img_source", SOURCE_UPLOAD)
        set_pref("upload_choice", report.items[0].name)
        st.session_state.pop(f"{page}_upload_choice", None)


def upload_report() -> session.UploadReport | None:
    """The last batch of uploads read on the Explore page."""
    report = st.session_state.get("upload_report")
    return report if isinstance(report, session.UploadReport) else None


def show_upload_problems(report: session.UploadReport) -> None:
    """One error per bad file, naming it; warnings folded away."""
    for message in report.errors:
        st.error(message, icon=":material/block:")
    if report.warnings:
        with st.expander(f"{len(report.warnings)} annotation note(s)"):
            for w in report.warnings:
                st.caption(w)


def _sources(state: AppState, report: session.UploadReport | None) -> list[str]:
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
    item: session.ImageItem
    cache: session.MapCache
    probs: Any  # (K,) class probabilities
    default_classes: list[str]  # the model's default targets for this image

    def maps(
        self, methods: Sequence[str], classes: Sequence[int], progress: Any = None
    ) -> tuple[dict[tuple[str, int], Any], dict[str, str]]:
        """:func:`session.compute_maps` of this image at the sidebar's layer and flip setting."""
        s = self.state
        return session.compute_maps(
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
    cache = session.cache_in(st.session_state)
    probs = session.class_scores(explainer, state.model_id, item, cache)
    classes = explainer.card.classes
    default = [classes[i] for i in explainer.default_targets(probs[None])[0]]
    return ImagePage(state, explainer, item, cache, probs, default)


def image_picker(state: AppState, page: str, *, allow_upload: bool) -> session.ImageItem | None:
    """Source choice (uploads, dataset, synthetic demo) and one image from it.

    ``page`` prefixes the widget keys; the choices themselves are shared between pages.
    """
    report = upload_report()
    sources = _sources(state, report)
    fallback = SOURCE_DATASET if state.dataset else SOURCE_DEMO
    wanted = pref("img_source", fallback)
    source = st.segmented_control(
        "Image source",
        sources,
        default=wanted if wanted in sources else fallback,
        key=f"{page}_img_source",
        on_change=remember,
        args=(f"{page}_img_source", "img_source"),
        label_visibility="collapsed",
    )
    source = source or fallback
    if source == SOURCE_UPLOAD:
        return _upload_picker(report, page, allow_upload)
    if source == SOURCE_PICKED:
        sample, where = st.session_state["picked_sample"]
        st.caption(f"Opened from the Evaluate page ({where}).")
        try:
            return item_for(sample, "dataset")
        except data.DataError as exc:
            st.error(str(exc))
            return None
    if source == SOURCE_DATASET and state.dataset is not None:
        label = f"{state.data_root} · split {state.split}"
        return _gallery(state.samples, "dataset", label, page)
    st.caption(
        "**Synthetic demo**: images drawn by `cam_core.synth` with known defect boxes; "
        "not real steel."
    )
    return _gallery(demo_samples(), session.SYNTHETIC_SOURCE, "synthetic demo", page)


def _upload_picker(
    report: session.UploadReport | None, page: str, allow_upload: bool
) -> session.ImageItem | None:
    if allow_upload:
        st.file_uploader(
            "Images (JPG/PNG/BMP/TIFF) and, optionally, their VOC XML files (paired by file name)",
            type=[s.lstrip(".") for s in data.IMAGE_SUFFIXES] + ["xml"],
            accept_multiple_files=True,
            key=f"{page}_uploads",
            on_change=_on_upload,
            args=(page,),
        )
    if report is None:
        st.info(
            "Drop one or more images (and their XML annotations) above."
            if allow_upload
            else "No uploads yet: add images on the Explore page."
        )
        return None
    show_upload_problems(report)
    if not report.items:
        return None
    names = [i.name for i in report.items]
    key = f"{page}_upload_choice"
    choice = st.selectbox(
        "Uploaded image",
        names,
        index=index_of(names, pref("upload_choice", names[0])),
        key=key,
        on_change=remember,
        args=(key, "upload_choice"),
    )
    return report.items[names.index(choice)]


def _gallery(
    samples: tuple[data.Sample, ...], source: str, where: str, page: str
) -> session.ImageItem | None:
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
    stem = right.selectbox(
        f"Image ({len(shown)} in {where})",
        stems,
        index=index_of(stems, pref("image_stem", stems[0])),
        key=key,
        on_change=remember,
        args=(key, "image_stem"),
    )
    with st.expander("Gallery", expanded=False):
        _thumbnails(shown, key)
    sample = shown[stems.index(stem)]
    try:
        return item_for(sample, source)
    except data.DataError as exc:
        st.error(str(exc))
        return None


def _open(stem: str, widget_key: str) -> None:
    set_pref("image_stem", stem)
    st.session_state[widget_key] = stem


def _thumbnails(
    shown: list[data.Sample], stem_key: str, per_page: int = 18, per_row: int = 6
) -> None:
    pages = max(1, -(-len(shown) // per_page))
    page = 1
    if pages > 1:
        page = int(st.number_input("Gallery page", 1, pages, 1, key=f"{stem_key}_page"))
    chunk = shown[(page - 1) * per_page : page * per_page]
    for row in range(0, len(chunk), per_row):
        cols = st.columns(per_row)
        for col, sample in zip(cols, chunk[row : row + per_row], strict=False):
            with col:
                try:
                    st.image(_thumb(str(sample.path), sample), width="stretch")
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


def short_key(*parts: object) -> str:
    """A short stable widget-key suffix for a tuple of values."""
    text = "|".join(map(str, parts))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    """Draw one page section; an error inside it is shown there and the rest of the page still
    draws (Streamlit's stop/rerun signals are not errors and pass through)."""
    try:
        yield
    except Exception as exc:  # one section must not take the page down
        st.error(f"{name} could not be drawn: {type(exc).__name__}: {exc}", icon=":material/error:")
