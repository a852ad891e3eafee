"""Models: the model card in use, bundled models, your own checkpoint, a quick training run."""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from cam_core import catalogue, figures
from cam_core.archive import ArchiveError
from cam_core.data import NEU_CLASSES
from cam_core.models import ARCHS, CheckpointError, ModelCard
from cam_core.models.hub import extract_hub_zip
from cam_core.models.hub import name_in_message as hub_message
from cam_core.models.timm_models import search_timm
from cam_core.synth import synthetic_folder
from cam_core.train import EpochEvent, StepEvent, TrainConfig, TrainEvent, train
from pages import _sidebar, _state

state = _sidebar.app_state()
st.title("Models")
st.caption("What the model is, how it was trained, and how well it classifies, before its maps.")


def card_view(card: ModelCard, ref: catalogue.ModelRef) -> None:
    """Everything the model card says, laid out for reading."""
    synthetic = card.synthetic or ref.synthetic
    st.subheader(card.name)
    badges = [
        f":blue-badge[{card.arch.split('?')[0]}]",  # timm/…?{args}: the args in the raw card
        f":gray-badge[{'multi-label' if card.multilabel else 'single-label'}]",
        f":gray-badge[{card.input_hw[0]}×{card.input_hw[1]} px input]",
    ]
    if synthetic:
        badges.append(":orange-badge[synthetic demo: trained on generated images]")
    box_loss = card.training.get("box_loss") if isinstance(card.training, dict) else None
    if box_loss:
        badges.append(
            f":violet-badge[box-supervised (weight {box_loss}): trained to take its evidence "
            "from the GT boxes]"
        )
    st.markdown(" ".join(badges))
    st.caption(f"Checkpoint: `{catalogue.checkpoint_shown(ref, _state.ROOT)}`")
    cardless = ref.classes is not None  # built from the form's fields
    if cardless:  # said once here (and once in the sidebar), not again below
        st.warning(catalogue.CARDLESS_WARNING, icon=":material/warning:")
    val = card.metrics.get("val", {}) if isinstance(card.metrics, dict) else {}
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Classes", len(card.classes))
    c2.metric("Val accuracy", f"{val['accuracy']:.3f}" if "accuracy" in val else "–")
    c3.metric("Val macro-F1", f"{val['macro_f1']:.3f}" if "macro_f1" in val else "–")
    c4.metric("Default CAM layer", card.default_layer)
    st.markdown("**Classes (output order):** " + ", ".join(f"`{c}`" for c in card.classes))
    feed = "gray → 3 channels" if card.in_chans == 3 else "gray, 1 channel"
    st.markdown(
        f"**Preprocessing:** {feed}, resize to {card.input_hw[0]}×{card.input_hw[1]} px, "
        f"mean {card.mean}, std {card.std}"
    )
    _layers_view(ref)
    command = card.training.get("command") if isinstance(card.training, dict) else None
    if command:
        st.markdown("**Training command**")
        st.code(command, language="bash", wrap_lines=True)
    left, right = st.columns(2)
    if "per_class" in val:
        left.markdown(f"**Validation per class** ({val.get('n', '?')} images)")
        left.dataframe(pd.DataFrame(val["per_class"]).T, width="stretch")
    if "confusion" in val:
        right.plotly_chart(
            figures.confusion_figure(card.classes, val["confusion"]),
            config={"displayModeBar": False},
            key="confusion",
        )
    history = card.metrics.get("history") if isinstance(card.metrics, dict) else None
    if history:
        st.markdown("**Training history**")
        frame = pd.DataFrame(history).set_index("epoch")
        st.line_chart(frame[[c for c in ("val_accuracy", "val_macro_f1") if c in frame]])
    if not cardless:  # the warning above already says there is no recommendation
        _recommendation_view(card)
    with st.expander("Training settings and raw card"):
        st.json(json.loads(card.to_json()), expanded=False)


def _layers_view(ref: catalogue.ModelRef) -> None:
    """The CAM layers a shape probe finds in the model (computed once per model)."""
    found = st.session_state.setdefault("layers_found", {})
    if ref.model_id not in found:
        try:
            found[ref.model_id] = [
                c.describe() for c in _state.load_explainer(ref).layer_candidates()
            ]
        except (ValueError, RuntimeError) as exc:
            found[ref.model_id] = [f"(no layer found: {exc})"]
    with st.expander(f"Layers found ({len(found[ref.model_id])}): the first is the default"):
        st.markdown(
            "\n".join(
                f"- `{line.split(' — ')[0]}` — {line.partition(' — ')[2]}"
                for line in found[ref.model_id]
            )
        )


def _recommendation_view(card: ModelCard) -> None:
    st.markdown("**Recommended CAM configuration**")
    if card.recommendation is not None:
        st.caption(catalogue.recommended_caption(card) or "")
        with st.expander("Recommendation details (JSON)"):
            st.json(card.recommendation.to_dict(), expanded=False)
    else:
        st.caption(
            "None recorded (run `python -m cam_core evaluate --auto-configure` on a "
            "validation split to add one)."
        )
    if card.notes:
        st.info(card.notes)


def _register(ref: catalogue.ModelRef) -> None:
    uploaded = [r for r in st.session_state.get("uploaded_models", []) if r.label != ref.label]
    st.session_state["uploaded_models"] = [*uploaded, ref]
    st.session_state["pending_model_choice"] = ref.label


def _box_key() -> str:
    # A new key after each load attempt empties the box: a card is never left over for the
    # next checkpoint dropped (the files of one drop are paired, nothing else).
    return f"ckpt_upload_{st.session_state.get('ckpt_round', 0)}"


def _load_upload(
    files: list, arch: str, classes_text: str, multilabel: bool
) -> list[tuple[str, str]]:
    """Pair the dropped files into a checkpoint and its card, load it and select it. Returns
    what to say, as (kind, text) with kind "success", "info" or "error"; every problem names
    its file."""
    zips = [f for f in files if f.name.lower().endswith(".zip")]
    if len(zips) == 1 and len(files) == 1:
        return _load_hub_zip(zips[0].name, zips[0].getvalue())
    pair = catalogue.pair_checkpoint_files([(f.name, f.getvalue()) for f in files])
    said = [("error", m) for m in pair.errors]
    notes = [("info", n) for n in pair.notes]
    if pair.checkpoint is None:
        if not files:
            said.append(("error", "Choose a checkpoint file first (and its .json model card)."))
        return said + notes
    try:
        ref = catalogue.uploaded_model(
            pair.checkpoint,
            card_json=pair.card,
            arch=None if arch.startswith("(") else arch,
            classes=classes_text.split(","),
            multilabel=multilabel,
        )
        card = _state.load_explainer(ref).card
    except (CheckpointError, ValueError, KeyError) as exc:
        text = str(exc.args[0] if isinstance(exc, KeyError) else exc)
        return [*said, ("error", catalogue.name_in_message(text)), *notes]
    _register(ref)
    with_card = f" with its card {pair.card[0]}" if pair.card else ""
    # a model without a card is warned about once, by its card view below
    settings = " with its recommended settings" if pair.card and card.recommendation else ""
    loaded = (
        f"{pair.checkpoint[0]} loaded{with_card} as **{ref.label}**; it is now selected in the "
        f"sidebar{settings}."
    )
    return [("success", loaded), *notes]


def _load_hub_zip(name: str, data: bytes) -> list[tuple[str, str]]:
    """A zipped hub folder (config.json beside model.safetensors / pytorch_model.bin):
    extracted safely, loaded offline, selected."""
    base = catalogue.UPLOAD_DIR / "hub"
    try:
        folder = extract_hub_zip(name, data, base)
        ref = catalogue.ModelRef(f"{folder.name} (uploaded)", str(folder), uploaded_as=name)
        card = _state.load_explainer(ref).card
    except ArchiveError as exc:  # names the zip entry; say which upload too
        return [("error", f"{name} refused — {exc}")]
    except (CheckpointError, ValueError, KeyError, OSError) as exc:
        text = str(exc.args[0] if isinstance(exc, KeyError) else exc)
        return [("error", hub_message(text, base))]
    _register(ref)
    arch = card.arch.split("?")[0]
    return [("success", f"{name} loaded as **{ref.label}** ({arch}); now selected in the sidebar.")]


_ICONS = {"error": ":material/block:", "info": ":material/info:", "success": None}

st.subheader("Use your own checkpoint")
# What the last load attempt said: shown by the run after it, which draws an empty box.
for kind, text in st.session_state.pop("ckpt_messages", ()):
    getattr(st, kind)(text, icon=_ICONS[kind])
query = st.text_input(
    "Find a timm architecture",
    placeholder="e.g. vit small, convnext, efficientnet_b0",
    help="Any of timm's architectures, built offline without pretrained weights and filled "
    "from your checkpoint. A zipped hub folder (config.json + model.safetensors) needs none.",
)
timm_found = [f"timm/{n}" for n in search_timm(query)] if query.strip() else []
if query.strip():
    st.caption(
        f"{len(timm_found)} timm architectures match (first 50), listed first in the form below"
        if timm_found
        else f"No timm architecture matches {query!r}."
    )
with st.form("upload_model"):
    files = st.file_uploader(
        "Checkpoint and its model card: drop `model.pt` and `model.json` together "
        "(weights: .pt, .pth, .safetensors, .bin), or one zipped hub folder (.zip with "
        "config.json beside model.safetensors or pytorch_model.bin)",
        type=None,  # every file is let in and named for what it is, not refused on hover
        accept_multiple_files=True,
        key=_box_key(),
    )
    st.caption(
        "Without a card the fields below are used and the normalisation is guessed from the "
        "architecture: predictions and maps may be wrong."
    )
    c1, c2 = st.columns(2)
    arch = c1.selectbox(
        "Architecture",
        ["(guess from the weights)", *timm_found, *ARCHS],
        help="Ignored when a model card is given.",
    )
    multilabel = c1.checkbox("Multi-label (sigmoid outputs)")
    classes_text = c2.text_area(
        "Class names in output order (comma-separated)", ", ".join(NEU_CLASSES)
    )
    submitted = st.form_submit_button("Load checkpoint", icon=":material/upload:")

if submitted:
    said = _load_upload(list(files or []), arch, classes_text, multilabel)
    # A new box key after each attempt (success or not) empties the box: a card is never left
    # over for the next checkpoint dropped, and the messages are shown by the next run.
    st.session_state["ckpt_messages"] = said
    st.session_state["ckpt_round"] = st.session_state.get("ckpt_round", 0) + 1
    st.rerun()

st.divider()
if state.card is not None and state.model_ref is not None:
    card_view(state.card, state.model_ref)
elif state.model_error:
    st.error(state.model_error)

st.divider()
st.subheader("Bundled models")
bundled = catalogue.bundled_models(_state.MODELS_DIR)
if bundled:
    st.dataframe(
        [
            {"model": r.label, "checkpoint": str(Path(r.path).relative_to(_state.ROOT))}
            for r in bundled
        ],
        hide_index=True,
        width="stretch",
    )
    st.caption("Switch models in the sidebar.")
else:
    st.caption(f"No bundled model in {_state.MODELS_DIR}.")

st.subheader("Train a model")
st.caption(
    "A short from-scratch run with live progress. Tiny defaults finish in about a minute "
    "on a CPU; use the command line for real training."
)
default_data = str(state.data_root) if state.data_root else str(synthetic_folder(3, 7))
with st.form("train"):
    c1, c2, c3 = st.columns(3)
    data_dir = c1.text_input("Data folder", default_data)
    name = c1.text_input("Name", "quick-run")
    arch_t = c2.selectbox("Architecture", list(ARCHS), index=list(ARCHS).index("local_resnet18"))
    epochs = c2.number_input("Epochs", 1, 100, 1)
    input_size = c2.number_input("Input size (px)", 32, 512, 64, step=16)
    limit = c3.number_input("Images per class (0 = all)", 0, 10_000, 10)
    batch = c3.number_input("Batch size", 2, 256, 16)
    multilabel_t = c3.checkbox("Multi-label (box classes)")
    box_loss_t = c1.number_input(
        "Box supervision weight",
        0.0,
        10.0,
        0.0,
        step=0.5,
        help="Ties each class score map to that class's GT boxes (local_* and patch_* "
        "architectures). 0 = image labels only.",
    )
    start = st.form_submit_button("Train", type="primary", icon=":material/model_training:")

if start:
    out = _state.RUNS_DIR / catalogue.safe_name(name)
    cfg = TrainConfig(
        data=data_dir,
        out=str(out),
        arch=arch_t,
        multilabel=multilabel_t,
        epochs=int(epochs),
        batch_size=int(batch),
        input_size=int(input_size),
        limit_per_class=int(limit) or None,
        box_loss=float(box_loss_t),
        device="cpu",
        name=name,
        command=f"app: Models page, {data_dir}",
    )
    bar = st.progress(0.0, text="Reading images…")
    chart = st.empty()
    losses: list[float] = []

    def _progress(event: TrainEvent) -> None:
        if isinstance(event, StepEvent):
            losses.append(event.loss)
            bar.progress(event.fraction, text=event.describe())
            chart.line_chart(pd.DataFrame({"training loss": losses}), height=200)
        elif isinstance(event, EpochEvent):
            st.caption(event.describe())

    try:
        path = train(cfg, _progress)
    except (ValueError, OSError, KeyError) as exc:
        st.error(f"Training failed: {exc}")
    else:
        bar.progress(1.0, text="done")
        _register(catalogue.ModelRef(f"{name} (trained)", str(path)))
        st.success(f"Saved {path}; it is now selected in the sidebar.")
        st.button("Show its card", on_click=lambda: None)
