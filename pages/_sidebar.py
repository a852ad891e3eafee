"""The shared sidebar: model, data, CAM methods, layer and flip averaging, drawn once per run by
app.py; every page reads what it decided from :func:`app_state`.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from cam_core import data
from cam_core.catalogue import (
    BOX_THRESHOLDS,
    CARDLESS_WARNING,
    ModelRef,
    bundled_models,
    layer_options,
    recommended_caption,
    recommended_threshold,
)
from cam_core.mapcache import cache_in
from cam_core.methods import METHODS, get_method
from cam_core.models import CheckpointError, ModelCard
from cam_core.vocabulary import method_name
from pages import _legacy
from pages._state import (
    DEFAULT_METHODS,
    MODELS_DIR,
    SPLITS,
    AppState,
    load_dataset,
    load_explainer,
    save_data_upload,
    set_pref,
    short_key,
    uploaded_data,
)


def _method_label(method: str) -> str:
    return method_name(method, mark_slow=True)


def _default_model(refs: list[ModelRef], have_data: bool) -> int:
    for i, ref in enumerate(refs):
        if ref.synthetic != have_data:
            return i
    return 0


def _offer_real_model(refs: list[ModelRef], labels: list[str], have_data: bool) -> None:
    """When the data turns real (a dataset folder typed) while a synthetic-demo model is
    selected, switch to the best real-data model (``refs`` are ranked best first), or say that
    none is loaded. The note is shown by :func:`sidebar`."""
    was_real = st.session_state.get("_data_was_real")
    st.session_state["_data_was_real"] = have_data
    if not have_data or was_real is not False:
        return
    current = refs[labels.index(st.session_state["model_choice"])]
    if not current.synthetic:
        return
    real = next((r for r in refs if not r.synthetic), None)
    if real is None:
        st.session_state["_model_note"] = (
            f"No real-data model is loaded: {current.label} was trained on synthetic images and "
            "says little about real steel. Add a real-data model on the Models page."
        )
        return
    st.session_state["model_choice"] = real.label
    st.session_state["_model_note"] = (
        f"Switched to **{real.label}** for the real data: {current.label} was trained on "
        "synthetic images. Pick it again above to compare."
    )


def _apply_recommendation(card: ModelCard, model_id: str, first_run: bool) -> None:
    """A newly selected model starts from its card's recommendation: CAM layer, map → boxes
    threshold and, after the first run (where widget defaults do it), flip averaging and the
    method."""
    layers = layer_options(card)
    st.session_state["layer"] = card.default_layer if card.default_layer in layers else layers[0]
    threshold = recommended_threshold(card, BOX_THRESHOLDS)
    set_pref("box_threshold", threshold)
    st.session_state["box_threshold"] = threshold
    rec = card.recommendation
    if first_run:  # widget defaults cover the first run (a pre-set value is dropped on it)
        return
    st.session_state[f"flips_{short_key(model_id)}"] = rec is not None and rec.flips
    if rec is not None and rec.method in METHODS:
        chosen = st.session_state.get("methods") or list(DEFAULT_METHODS)
        st.session_state["methods"] = [rec.method, *[m for m in chosen if m != rec.method]]


def _on_data_upload() -> None:
    """A dropped batch becomes this session's dataset (or an error naming the bad entry; the
    dataset in use before stays)."""
    round_ = st.session_state.get("data_upload_round", 0)
    files = st.session_state.get(f"data_upload_{round_}") or []
    st.session_state["data_upload_round"] = round_ + 1  # a new key empties the drop zone
    if not files:
        return
    saved = save_data_upload([(f.name, f.getvalue()) for f in files])
    if isinstance(saved, str):
        st.session_state["data_upload_error"] = saved
        return
    st.session_state.pop("data_upload_error", None)
    st.session_state["uploaded_data"] = saved


def _use_folder() -> None:
    """Back to the folder typed (or the demo): the upload stays on disk for this session."""
    st.session_state.pop("uploaded_data", None)
    st.session_state.pop("data_upload_error", None)


SLOW_SECONDS = 8.0
"""A method that took this long on one image here is named as slow (e.g. EigenCAM on a big
layer), whatever its registry flag says."""


def _slow_note(methods: list[str], model_id: str, flips: bool) -> str:
    """A caption naming the slow methods chosen and how long each took here (or may take)."""
    cache = cache_in(st.session_state)
    parts = []
    for m in methods:
        seconds = cache.estimate(model_id, m, flips)
        if seconds is not None and (seconds >= SLOW_SECONDS or get_method(m).slow):
            parts.append(f"{method_name(m)} (about {max(seconds, 1):.0f} s per image here)")
        elif seconds is None and get_method(m).slow:
            parts.append(f"{method_name(m)} (up to a minute per image on a CPU)")
    if not parts:
        return ""
    return (
        f":material/hourglass_top: Slow: {', '.join(parts)}. Maps already drawn stay while the "
        "slow ones are computed."
    )


def sidebar() -> AppState:
    """Draw the shared sidebar (model, data, methods, layer) and return what it says."""
    refs = bundled_models(MODELS_DIR) + list(st.session_state.get("uploaded_models", []))
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
    have_data = have_data or uploaded_data() is not None
    if refs:
        labels = [r.label for r in refs]
        pending = st.session_state.pop("pending_model_choice", None)
        if pending in labels:
            st.session_state["model_choice"] = pending
        if st.session_state.get("model_choice") not in labels:
            st.session_state["model_choice"] = labels[_default_model(refs, have_data)]
        _offer_real_model(refs, labels, have_data)
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
    if note := st.session_state.pop("_model_note", None):
        sb.info(note, icon=":material/swap_horiz:")
    if state.card is not None:
        card = state.card
        kind = "multi-label" if card.multilabel else "single-label"
        synthetic = " · **synthetic**" if state.synthetic_model else ""
        sb.caption(
            f"`{card.arch}` · {len(card.classes)} classes · {kind} · "
            f"{card.input_size} px{synthetic}"
        )
        if state.model_ref is not None and state.model_ref.classes is not None:
            sb.warning(CARDLESS_WARNING, icon=":material/warning:")
        if st.session_state.get("_applied_model") != state.model_id:
            first_run = "_applied_model" not in st.session_state
            st.session_state["_applied_model"] = state.model_id
            _apply_recommendation(card, state.model_id, first_run)

    sb.markdown("### Data")
    upload = uploaded_data()
    sb.text_input(
        "Dataset folder",
        value=dataset_default,
        key="dataset_dir",
        on_change=_use_folder,
        help="NEU-DET root (IMAGES/ + ANNOTATIONS/, or the Kaggle layout) or a VOC folder. "
        "Empty: the synthetic demo images.",
        placeholder="empty: synthetic demo",
    )
    state.split = sb.selectbox(
        "Split",
        SPLITS,
        key="split",
        disabled=upload is not None,
        help="Deterministic 70/15/15 split by file-name hash. An upload is used whole.",
    )
    sb.file_uploader(
        "…or upload a dataset: images + VOC XML, or one .zip",
        type=[s.lstrip(".") for s in data.IMAGE_SUFFIXES] + ["xml", "zip"],
        accept_multiple_files=True,
        key=f"data_upload_{st.session_state.get('data_upload_round', 0)}",
        on_change=_on_data_upload,
        help="Evaluated like a dataset folder: a zip of an IMAGES/ + ANNOTATIONS/ or VOC folder, "
        "or the files themselves. Kept in a temporary folder of this browser session.",
    )
    if error := st.session_state.get("data_upload_error"):
        sb.error(error, icon=":material/block:")
    root = (st.session_state.get("dataset_dir") or "").strip()
    if upload is not None:
        state.data_root, state.split, state.data_label = upload.root, "all", upload.label
    elif root:
        state.data_root = Path(root).expanduser()
        state.data_label = str(state.data_root)
    if state.data_root is not None:
        try:
            state.dataset = load_dataset(state.data_root, state.split)
            ds = state.dataset
            bad = f" · {len(ds.errors)} files skipped" if ds.errors else ""
            where = f"**uploaded** {upload.label} · " if upload is not None else ""
            sb.caption(f"{where}{len(ds)} images ({ds.layout} layout){bad}")
        except (data.DataError, OSError) as exc:
            state.data_error = str(exc)
            sb.error(state.data_error)
        if upload is not None:
            sb.button(
                "Use the dataset folder instead",
                on_click=_use_folder,
                icon=":material/folder_open:",
                type="tertiary",
            )
    else:
        sb.caption("No dataset: the **synthetic demo** images are used.")
    if state.dataset is not None and state.synthetic_model:
        sb.warning(
            f"{state.model_ref.label} was trained on synthetic images; the dataset is real "
            "steel: its predictions and maps say little about it.",
            icon=":material/warning:",
        )

    sb.markdown("### Methods")
    rec = state.card.recommendation if state.card is not None else None
    first = [rec.method] if rec is not None and rec.method in METHODS else []
    if (pending := st.session_state.pop("pending_methods", None)) is not None:
        # set by another page's callback (Evaluate's "Open in Explore"): applied here, in the
        # run that draws the box, so the box and the page agree
        st.session_state["methods"] = [m for m in pending if m in METHODS]
    state.methods = sb.multiselect(
        "CAM methods",
        list(METHODS),
        # A widget default, not a pre-set session_state value: the latter is dropped by
        # Streamlit on the session's first rerun (tests/e2e/test_load.py).
        default=[*dict.fromkeys([*DEFAULT_METHODS, *first])],
        key="methods",
        format_func=_method_label,
        help="Shown side by side on Explore; swept on Evaluate.",
    )
    if slow := _slow_note(
        state.methods,
        state.model_id,
        bool(st.session_state.get(f"flips_{short_key(state.model_id)}")),
    ):
        sb.caption(slow)
    if state.card is not None:
        layers = layer_options(state.card)
        if st.session_state.get("layer") not in layers:
            st.session_state["layer"] = layers[0]
        state.layer = sb.selectbox("Target layer", layers, key="layer")
        state.flips = sb.toggle(
            "Flip averaging",
            # one key per model, so each model starts from its own recommendation
            value=rec is not None and rec.flips,
            key=f"flips_{short_key(state.model_id)}",
            help="Average each map over the four flips of the image (4× the work). A map's "
            "habit of peaking in the same place whatever the image averages out; evidence on "
            "the defect moves with it and stays.",
        )
        note = recommended_caption(state.card)
        if note:
            sb.caption(note)
    st.session_state["app_state"] = state
    return state


def app_state() -> AppState:
    """The state the sidebar set for this run. Every page calls it first: a fresh server whose
    first request is a page's own address (``/evaluate``) runs that page without ``app.py``
    (Streamlit's legacy ``pages/`` route), so it leaves that mode here too and reruns through
    ``app.py``."""
    _legacy.leave_legacy_mode()
    state = st.session_state.get("app_state")
    return state if isinstance(state, AppState) else sidebar()
