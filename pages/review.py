"""Review: the latest evaluation read as a sign-off — right for the right reason, positional
bias, annotation QA, and release against release."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from cam_core import figures, render
from cam_core.evaluation import BASELINE_LAYER
from cam_core.review import annotation_qa, bias, diff, quadrants
from cam_core.review.maps import RowMap, maps_for
from cam_core.vocabulary import method_name, metric_name
from pages import _explore_link, _sidebar, _state

GALLERY = 8  # images per gallery page (their maps are computed again: rows keep no maps)

state = _sidebar.app_state()
_explore_link.follow()
st.title("Review")
st.caption(
    "The latest evaluation, read as a sign-off: which images are right for the wrong reason, "
    "does the evidence sit in a fixed place, which boxes look wrong, and did the new release get "
    "better or worse."
)
result = st.session_state.get("eval_result")
run = st.session_state.get("eval_run")
by_stem = st.session_state.get("eval_samples", {})
if result is None or run is None or result.n_done == 0:
    st.info(
        "No evaluation to review yet. Open **Evaluate**, choose methods and images, press "
        "**Run evaluation**, then come back: this page reads that run's results.",
        icon=":material/info:",
    )
    st.page_link("pages/evaluate.py", label="Open the Evaluate page", icon=":material/monitoring:")
    st.stop()

st.markdown(f"**Reviewing:** {result.model} · {result.status()}")
groups = [g for g in result.groups() if g[1] != BASELINE_LAYER]
c1, c2 = st.columns([3, 2])
method, layer = c1.selectbox(
    "Map reviewed",
    groups,
    format_func=lambda g: f"{method_name(g[0])} @ {g[1]}",
    key="review_group",
)
hit = (
    c2.segmented_control(
        "A map hits the defect when",
        list(quadrants.HIT_COLUMNS),
        default="pointing",
        format_func=lambda h: {"pointing": "its peak is in a box", "pointing_tol": "peak ±15 px"}[
            h
        ],
        key="review_hit",
        help="Hit = the pointing game: the map's hottest pixel lies inside a GT box of the "
        "explained class (strict), or within 15 px of one.",
    )
    or "pointing"
)
rows = result.rows_frame()


def _maps(explainer: object, pairs: list[tuple[object, str]], m: str, lay: str) -> list[RowMap]:
    """Maps of ``pairs`` (cached in this session: reruns do not recompute them)."""
    cache = st.session_state.setdefault("review_maps", {})
    key = (
        id(explainer),
        tuple((p[0].stem, p[1]) for p in pairs),
        m,
        lay,
        result.config.flip_smooth,
    )
    if key not in cache:
        if len(cache) > 32:
            cache.clear()
        cache[key] = maps_for(explainer, pairs, m, lay, flip_smooth=result.config.flip_smooth)
    return cache[key]


def _panel(item: RowMap, caption: str) -> None:
    st.image(render.panel_image(item.image, item.cam, gt_boxes=item.boxes), caption=caption)


def _open_button(stem: str, cls: str, key: str, where: str) -> None:
    st.button(
        "Open in Explore",
        key=key,
        on_click=_explore_link.open_in_explore,
        args=(state, by_stem[stem], cls, method, where),
        icon=":material/open_in_new:",
        help="Show this image, class and method on the Explore page.",
    )


tab_q, tab_b, tab_a, tab_d = st.tabs(
    ["Right for the right reason", "Positional bias", "Annotation QA", "Release vs release"]
)

# ----------------------------------------------------------------------------- quadrants
with tab_q, _state.section("Right for the right reason"):
    counts = quadrants.quadrant_counts(rows, method, layer, hit, classes=result.classes)
    st.subheader("Classification × localization, per class")
    st.caption(
        "Each (image, class) row of the evaluated split falls in one quadrant: was the class "
        "predicted correctly, and does the map's peak land in a box of that class? **Correct "
        "class, map off the defect** comes first: the cases accuracy hides. *Off share* = that "
        "count / all correct rows. *Unscored*: no box of the class, an error, or no file class."
    )
    shown = counts.rename(
        columns={
            "class": "Class",
            **quadrants.QUADRANT_NAMES,
            "n": "Scored",
            "unscored": "Unscored",
        }
    )
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "off_share": st.column_config.NumberColumn(
                "Off share", format="percent", help="Correct but off the defect / all correct."
            )
        },
        key="quadrant_table",
    )
    g1, g2, g3 = st.columns([2, 2, 1])
    wrong_only = g3.toggle(
        "Misclassified only", key="review_wrong_only", help="Only wrong predictions."
    )
    options = [q for q in quadrants.QUADRANTS if not wrong_only or q.startswith("wrong")]
    quadrant = g1.selectbox(
        "Gallery", options, format_func=quadrants.QUADRANT_NAMES.get, key="review_quadrant"
    )
    cls_pick = g2.selectbox("Class", ["all", *result.classes], key="review_class")
    listed = quadrants.quadrant_rows(rows, method, layer, hit)
    listed = listed[listed["quadrant"] == quadrant]
    if cls_pick != "all":
        listed = listed[listed["class"] == cls_pick]
    if wrong_only:
        listed = quadrants.misclassified(listed)
    st.caption(
        f"{len(listed)} rows · {quadrants.QUADRANT_NAMES[quadrant]} · lowest energy in the boxes "
        f"first; the first {GALLERY} drawn with their map (GT boxes in class colours)."
    )
    first = listed.head(GALLERY)
    pairs = [
        (by_stem[s], c) for s, c in zip(first["stem"], first["class"], strict=True) if s in by_stem
    ]
    if pairs:
        cols = st.columns(4)
        for i, (item, rec) in enumerate(
            zip(_maps(run.explainer, pairs, method, layer), first.itertuples(), strict=False)
        ):
            with cols[i % 4]:
                tag = "predicted " + str(rec.predicted) if "predicted" in first.columns else ""
                _panel(item, f"{item.sample.stem} · {item.cls} · p={rec.score:.2f} · {tag}")
                where = f"Review, {quadrants.QUADRANT_NAMES[quadrant].lower()}, {item.sample.stem}"
                _open_button(item.sample.stem, item.cls, f"rq_open_{i}", where)
    st.subheader("Confusion matrix of the evaluated split")
    try:
        matrix = quadrants.confusion(rows, result.classes)
        fig = figures.confusion_figure(list(matrix.index), matrix.to_numpy())
        fig.update_layout(
            title={"text": "Evaluated split: images by true class (rows) and top-1 prediction"}
        )
        st.plotly_chart(fig, key="review_confusion")
        st.caption("Counted once per image; the model card's matrix is on the validation split.")
    except KeyError as exc:
        st.info(str(exc).strip("'\""))

# ------------------------------------------------------------------------ positional bias
with tab_b, _state.section("Positional bias"):
    st.subheader("Where does the evidence sit, whatever the image?")
    st.caption(
        "Per class: the mean of every map (each divided by its peak) in image coordinates, beside "
        "the share of images whose boxes cover each spot. A model whose maps follow the defects "
        "has a mean map shaped like its box density; a fixed bright spot (a zero-padding artefact) "
        "or a bright border means the map is anchored to the frame, not the defect."
    )
    table = bias.bias_table(result, method, layer)
    if table.empty:
        st.info(
            "This run stored no map grids (an evaluation made before this view existed): "
            "run it again."
        )
    else:
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                k: st.column_config.NumberColumn(name, format="%.2f", help=tip)
                for k, (name, tip) in bias.COLUMNS.items()
            }
            | {"flagged": st.column_config.CheckboxColumn("Flagged")},
            key="bias_table",
        )
        st.caption(bias.FLAG_RULE)
        pick = st.selectbox("Class", [*table["class"], "all"], key="review_bias_class")
        mean_map, density = bias.bias_maps(result, method, layer, pick)
        if mean_map is not None:
            st.plotly_chart(
                bias.bias_figure(mean_map, density, f"{pick} · {method_name(method)} @ {layer}"),
                key="bias_fig",
            )

# -------------------------------------------------------------------------- annotation QA
with tab_a, _state.section("Annotation QA"):
    st.subheader("Boxes to check")
    st.caption(
        "Images the model classifies correctly and confidently while its map peaks outside every "
        "box of the class — or where the class has no box at all. Either the model uses context, "
        "or the box is missing or misplaced. Most suspicious first: score × (1 − energy in the "
        "boxes)."
    )
    conf = st.slider("Confidence at least", 0.5, 1.0, 0.9, 0.01, key="review_conf")
    qa = annotation_qa.qa_candidates(rows, method, layer, conf)
    st.dataframe(qa, hide_index=True, width="stretch", key="qa_table")
    if not qa.empty:
        e1, e2 = st.columns(2)
        top = e1.number_input(
            "Export the first", 1, min(len(qa), 200), min(len(qa), 20), key="review_qa_n"
        )
        thr = e2.slider(
            "Map → box threshold (fraction of peak)", 0.1, 0.9, 0.5, 0.05, key="review_qa_thr"
        )
        if st.button(
            "Prepare VOC XML of map-derived boxes", key="qa_prepare", icon=":material/inventory_2:"
        ):
            head = qa.head(int(top))
            todo = [
                (by_stem[s], c)
                for s, c in zip(head["stem"], head["class"], strict=True)
                if s in by_stem
            ]
            st.session_state["review_qa_zip"] = annotation_qa.voc_zip(
                _maps(run.explainer, todo, method, layer), thr
            )
        if "review_qa_zip" in st.session_state:
            st.download_button(
                "Download map-derived boxes (zip of VOC XML)",
                st.session_state["review_qa_zip"],
                "map_boxes_voc.zip",
                "application/zip",
                on_click="ignore",
                icon=":material/download:",
                help="One <stem>.xml per image in annotations/: proposals from the map, not ground "
                "truth. Your own files are never touched.",
            )

# ------------------------------------------------------------------------ release vs release
with tab_d, _state.section("Release vs release"):
    st.subheader("Did release B get better or worse than A on these images?")
    st.caption(
        f"A is this evaluation ({result.model}). B is evaluated on the same {result.n_done} images "
        "with the same settings; differences are B − A with paired bootstrap 95 % intervals over "
        "images (1,000 draws, seed 0). Green / red: the interval excludes 0."
    )
    others = [r for r in state.models if r.path != result.config.checkpoint]
    if not others:
        st.info("Only one model is available: load another checkpoint on the Models page.")
    else:
        ref = st.selectbox("Release B", others, format_func=lambda r: r.label, key="review_b")
        if st.button(
            f"Evaluate {ref.label} on the same images",
            key="diff_run",
            icon=":material/compare_arrows:",
        ):
            explainer_b = _state.load_explainer(ref)
            bar = st.progress(0.0, text="Evaluating B…")
            deadline = time.monotonic() + 600

            def _progress(done: int, total: int, message: str) -> None:
                bar.progress(done / max(total, 1), text=f"B: {message}")

            try:
                res_b, note = diff.evaluate_like(
                    result,
                    explainer_b,
                    list(by_stem.values()),
                    ref.path,
                    progress=_progress,
                    should_stop=lambda: time.monotonic() > deadline,
                )
                found = diff.diff_results(result, res_b, method=method, layer_a=layer)
                st.session_state["review_diff"] = (result, found, explainer_b, note)
            except (ValueError, KeyError) as exc:
                st.error(f"The diff could not run: {exc}")
            bar.empty()
        saved = st.session_state.get("review_diff")
        if saved is not None and saved[0] is result:
            _, found, explainer_b, note = saved
            if note:
                st.info(note)
            st.markdown(f"**A:** {found.a} · **B:** {found.b} · {found.n_images} images in both")
            st.dataframe(
                diff.styled_table(found.table),
                hide_index=True,
                width="stretch",
                key="diff_table",
            )
            st.caption(f"{len(found.changes)} (image, class) rows changed, worse first.")
            picked = st.dataframe(
                found.changes,
                hide_index=True,
                width="stretch",
                on_select="rerun",
                selection_mode="single-row",
                key="diff_changes",
            )
            sel = picked.selection.rows if picked is not None else []
            if sel:
                rec = found.changes.iloc[sel[0]]
                pair = [(by_stem[rec["stem"]], rec["class"])]
                left, right = st.columns(2)
                with left:
                    _panel(_maps(run.explainer, pair, method, found.layer_a)[0], f"A · {found.a}")
                with right:
                    _panel(_maps(explainer_b, pair, method, found.layer_b)[0], f"B · {found.b}")
                st.caption(
                    f"{rec['stem']} · {rec['class']}: {rec['change']} ({metric_name('energy')} "
                    f"{pd.to_numeric(rec['energy_a']):.2f} → {pd.to_numeric(rec['energy_b']):.2f})"
                )
