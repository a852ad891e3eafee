"""What every page shares in a browser session: the sidebar's decisions (:class:`AppState`), the
user's remembered choices (prefs), and the cached model, dataset and image loaders.

Computation lives in cam_core; this module only keeps state and wraps loaders in Streamlit's
caches.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from cam_core import data, render, synth
from cam_core.archive import ArchiveError, save_upload
from cam_core.catalogue import ModelRef
from cam_core.evaluation.store import prune_stores
from cam_core.explain import Explainer
from cam_core.models import ModelCard, load_model
from cam_core.uploads import ImageItem, item_from_sample

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
RUNS_DIR = ROOT / "runs"
"""Where the Models page writes quick training runs (git-ignored)."""
SPLITS = ("test", "val", "train", "all")
DEFAULT_METHODS = ("gradcam", "gradcam++")


@dataclass
class AppState:
    """What the sidebar decided for this run."""

    models: list[ModelRef]
    model_ref: ModelRef | None = None
    explainer: Explainer | None = None
    model_error: str | None = None
    data_root: Path | None = None
    dataset: data.Dataset | None = None
    data_error: str | None = None
    split: str = "test"
    methods: list[str] = field(default_factory=list)
    layer: str = ""
    flips: bool = False
    data_label: str = ""
    """What the data is, for people: the folder typed, or the uploaded files' name."""

    @property
    def card(self) -> ModelCard | None:
        return self.explainer.card if self.explainer else None

    @property
    def model_id(self) -> str:
        return self.model_ref.model_id if self.model_ref else ""

    @property
    def synthetic_model(self) -> bool:
        """The model in use was trained on synthetic images (its card or its folder says so)."""
        card = self.card
        ref = self.model_ref
        return bool((card is not None and card.synthetic) or (ref is not None and ref.synthetic))

    @property
    def samples(self) -> tuple[data.Sample, ...]:
        return self.dataset.samples if self.dataset else ()


def require_explainer(state: AppState) -> Explainer:
    """The engine, or an explanation of what is missing and the end of the page."""
    if state.explainer is None:
        st.error(f"No model to explain with: {state.model_error or 'none selected'}.")
        st.page_link(
            "pages/models.py", label="Open the Models page", icon=":material/model_training:"
        )
        st.stop()
    return state.explainer


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


def load_explainer(ref: ModelRef) -> Explainer:
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
    return synth.synthetic_samples(3, 7)


@st.cache_resource(max_entries=64)
def _item(path: str, sample: data.Sample, source: str) -> ImageItem:
    return item_from_sample(sample, source=source)


def item_for(sample: data.Sample, source: str) -> ImageItem:
    """The decoded image of a sample (cached per server)."""
    return _item(str(sample.path), sample, source)


@st.cache_data(max_entries=512, show_spinner=False)
def thumbnail_png(path: str, _sample: data.Sample) -> bytes:
    """A 120 px PNG thumbnail of a sample with its boxes (cached per server, by path)."""
    item = item_from_sample(_sample)
    return render.png_bytes(render.thumbnail(item.image, item.boxes, side=120))


# --------------------------------------------------------------------------- uploaded datasets

UPLOADS = Path(tempfile.gettempdir()) / "cam-core-uploads"
"""Every browser session's uploaded datasets; a session's folder is deleted 2 days after its last
upload."""
UPLOAD_DAYS = 2
KEEP_UPLOADS = 3
"""A session keeps its last few uploads on disk (an earlier result may still show their images)."""


@dataclass(frozen=True)
class UploadedData:
    """A dataset uploaded in this session: the folder its files were written to and its name."""

    root: Path
    label: str


def upload_root() -> Path:
    """This browser session's folder of uploaded datasets (one sub-folder per upload)."""
    if "_upload_session" not in st.session_state:
        st.session_state["_upload_session"] = uuid.uuid4().hex
        prune_stores(UPLOADS, UPLOAD_DAYS * 86_400, keep=st.session_state["_upload_session"])
    return UPLOADS / st.session_state["_upload_session"]


def save_data_upload(files: Sequence[tuple[str, bytes]]) -> UploadedData | str:
    """Write one dropped batch (one .zip, or images + XML) into a new folder of this session
    (:func:`cam_core.archive.save_upload`): the dataset it makes, or the error to show."""
    base = upload_root()
    n = st.session_state.get("_upload_count", 0) + 1
    st.session_state["_upload_count"] = n
    try:
        root = save_upload(files, base / f"upload-{n}")
    except (ArchiveError, OSError) as exc:
        return f"Upload refused — {exc}"
    for old in range(1, n - KEEP_UPLOADS + 1):
        shutil.rmtree(base / f"upload-{old}", ignore_errors=True)
    names = [name for name, _ in files]
    label = names[0] if len(names) == 1 else f"{len(names)} uploaded files"
    return UploadedData(root, label)


def uploaded_data() -> UploadedData | None:
    """The dataset uploaded in this session and in use (None: the folder or the demo)."""
    up = st.session_state.get("uploaded_data")
    return up if isinstance(up, UploadedData) and up.root.is_dir() else None


# --------------------------------------------------------------------------- preferences


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


def short_key(*parts: object) -> str:
    """A short stable widget-key suffix for a tuple of values."""
    text = "|".join(map(str, parts))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]


def classes_pref(model_id: str, image_key: str) -> str:
    """The preference (and widget key) holding the classes explained for one image and model
    (:attr:`cam_core.uploads.ImageItem.key`; :func:`cam_core.uploads.file_key` for a sample)."""
    return f"classes_{short_key(model_id, image_key)}"


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    """Draw one page section; an error inside it is shown there and the rest of the page still
    draws (Streamlit's stop/rerun signals are not errors and pass through).
    """
    try:
        yield
    except Exception as exc:  # one section must not take the page down
        st.error(f"{name} could not be drawn: {type(exc).__name__}: {exc}", icon=":material/error:")
