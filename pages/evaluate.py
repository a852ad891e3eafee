"""Evaluate: localization figures of methods over a dataset split, beside model-free baselines."""

import streamlit as st

from cam_core import evaluation as evaluate
from cam_core import figures, verdict
from cam_core import trust_figures as TF
from cam_core.catalogue import layer_options
from cam_core.evaluation.worst import ranking_figure, worst_cases
from cam_core.methods import METHODS, get_method
from cam_core.vocabulary import (
    METRICS,
    method_name,
    metric_name,
    metric_tooltip,
    target_rule_name,
)
from pages import _evalrun, _explore_link, _sidebar, _state

state = _sidebar.app_state()
st.title("Evaluate")
st.caption(
    "Do the maps land on the defects across a whole split, and do they beat maps that know "
    "nothing (centre point, centred Gaussian, uniform)?"
)
explainer = _state.require_explainer(state)

if state.dataset is not None:
    samples, where = state.samples, f"{state.data_label} · split {state.split}"
else:
    samples, where = _state.demo_samples(), "synthetic demo (3 images per class)"
st.markdown(f"**Data:** {where} · {len(samples)} images · **model:** {state.model_ref.label}")


def _open_in_explore(stem: str, cls: str, method: str) -> None:
    """Callback of a worst-case row: show that image, class and method on Explore."""
    sample = st.session_state["eval_samples"][stem]
    where = f"Evaluate, worst case: {stem}, {cls}, {method_name(method)}"
    _explore_link.open_in_explore(state, sample, cls, method, where)


_explore_link.follow()

# Enter in a number box must not start a whole-split run: only the Run button does.
with st.form("eval_form", enter_to_submit=False):
    c1, c2, c3 = st.columns(3)
    methods = c1.multiselect(
        "Methods",
        list(METHODS),
        default=[m for m in state.methods if not get_method(m).slow] or ["gradcam"],
        format_func=lambda m: method_name(m, mark_slow=True),
    )
    layers_all = layer_options(explainer.card)
    layers = c1.multiselect("Layers", layers_all, default=[state.layer or layers_all[0]])
    rule = c2.selectbox(
        "Target classes",
        evaluate.TARGET_RULES,
        index=_state.index_of(evaluate.TARGET_RULES, _state.pref("eval_rule", None)),
        format_func=target_rule_name,
        key="eval_rule_input",
        help=f"{target_rule_name('file-class')}: explained against its boxes. "
        f"{target_rule_name('box-classes')}: each explained against its own boxes. "
        f"{target_rule_name('predicted')}: the model's prediction, against that class's boxes.",
    )
    most = max(len(samples), 1)
    limit = c2.number_input(
        "Images (0 = all)",
        0,
        most,
        min(_state.pref("eval_limit", 60), most),
        step=10,
        key="eval_limit_input",
    )
    tau = c3.slider(
        "τ: map threshold for IoU (fraction of peak)",
        0.1,
        0.9,
        _state.pref("eval_tau", 0.5),
        0.05,
        key="eval_tau_input",
    )
    flips = c3.toggle(
        "Flip averaging", value=state.flips, help="Every map averaged over the image's 4 flips."
    )
    faith = c2.checkbox(
        "Faithfulness",
        value=_state.pref("eval_faith", False),
        help="Deletion / insertion AUC (with a random-order map beside it), ROAD and drop / "
        "increase in confidence: does the model's score depend on what the map shows? "
        "Many forward passes per image (slow).",
    )
    sane = c2.checkbox(
        "Sanity checks",
        value=_state.pref("eval_sane", False),
        help="Randomise the model's weights from the head down (on a copy) and see whether "
        "each method's map changes, as it must if it explains the model (a few images).",
    )
    budget = c3.number_input(
        "Stop after (seconds)",
        10,
        3600,
        _state.pref("eval_budget", 300),
        step=30,
        key="eval_budget_input",
    )
    submitted = st.form_submit_button(
        "Run evaluation", type="primary", icon=":material/play_arrow:"
    )

try:  # what the form describes now (compared with the results shown below it)
    form_cfg: evaluate.EvalConfig | None = evaluate.EvalConfig(
        data=str(state.data_root or "synthetic demo"),
        checkpoint=state.model_ref.path,
        split=None if state.dataset is None or state.split == "all" else state.split,
        methods=tuple(methods),
        layers=tuple(layers),
        target_rule=rule,
        tau=float(tau),
        flip_smooth=bool(flips),
        limit=int(limit) or None,
        batch_size=8,
        **{k: True for k, on in (("faithfulness", faith), ("sanity", sane)) if on},
    )
except ValueError as exc:
    form_cfg = None
    if submitted:
        st.error(f"Cannot run: {exc}. Pick at least one method and one layer.")

if submitted:  # the form starts from these next time (its widgets reset on a page switch)
    for name, value in (
        ("rule", rule),
        ("limit", limit),
        ("tau", tau),
        ("budget", budget),
        ("faith", faith),
        ("sane", sane),
    ):
        _state.set_pref(f"eval_{name}", value)
if submitted and form_cfg is not None:
    _evalrun.start(form_cfg, samples, explainer)
run = _evalrun.advance(float(budget), start=submitted)

result: evaluate.EvalResult | None = st.session_state.get("eval_result")
if result is None or run is None:
    st.info("Choose methods and press **Run evaluation**. Tip: start with 60 images.")
    st.stop()

st.subheader("Results")
_evalrun.show_state(result, run)
if result.n_done == 0:
    st.stop()  # stopped before its first batch finished: nothing to show yet
summary = result.summary()
_evalrun.show_settings(result, form_cfg)
st.caption(
    "Every metric is a fraction, higher is better; baselines are model-free maps scored on the "
    "same (image, class) pairs."
)
if st.session_state.get("eval_ci_of") is not result:  # bootstrap once per result
    with st.spinner("95 % bootstrap intervals (1,000 draws of the images)…"):
        st.session_state["eval_ci"] = verdict.confidence_table(result)
    st.session_state["eval_ci_of"] = result
ci = st.session_state["eval_ci"]
verdicts = verdict.verdicts(ci, getattr(result, "sanity", None), result.model)
loc_tab, faith_tab, size_tab, sanity_tab, verdict_tab = st.tabs(
    ["Localization", "Faithfulness", "By box size", "Sanity checks", "Verdict"]
)
with loc_tab:
    metrics = [m for m in METRICS if m in summary.columns]
    metric = st.segmented_control(
        "Metric", metrics, default="pointing", format_func=metric_name, key="eval_metric"
    )
    metric = metric or "pointing"
    with _state.section("The per-class table"):
        table = figures.comparison_table(summary, metric)
        st.markdown(
            f"**{metric_name(metric)}** per class — baselines in the right-hand columns",
            help=metric_tooltip(metric),
        )
        st.dataframe(figures.styled_comparison(table), width="stretch")
        st.caption("Green: beats every baseline for that class. Grey italic: baselines.")
        st.plotly_chart(TF.ci_bars(ci, metric), key="eval_bars")
        st.caption(
            "Error bars: 95 % bootstrap intervals (images resampled, 1,000 draws, seed 0). "
            "Against the best baseline of each class, paired on the same images:"
        )
        st.dataframe(TF.diff_table(ci, [metric]), hide_index=True, width="stretch")
with faith_tab, _state.section("Faithfulness"):
    shown = [f for f in TF.FIGURE_NAMES if f in set(ci["figure"])]
    if not shown:
        st.info("Not measured in this run: tick **Faithfulness** in the form and run again.")
    else:
        figure = st.segmented_control(
            "Figure", shown, default=shown[-1], format_func=TF.figure_name, key="eval_faith_fig"
        )
        st.plotly_chart(TF.ci_bars(ci, figure or shown[-1]), key="eval_faith_bars")
        st.dataframe(TF.ci_table(ci, shown), hide_index=True, width="stretch")
        notes = [r for r in result.rows if r.get("faith_error")]
        if notes:
            st.caption(
                f"{len(notes)} map(s) have no faithfulness figures (they still count for "
                "localization): " + "; ".join(f"{r['stem']}: {r['faith_error']}" for r in notes[:5])
            )
with size_tab, _state.section("By box size"):
    st.caption(
        f"{metric_name(metric)} by the share of the image the class's boxes cover: large boxes "
        "inflate pointing and energy. Cells: value [95 % interval] (images)."
    )
    st.dataframe(TF.size_table(ci, metric), hide_index=True, width="stretch")
with sanity_tab, _state.section("Sanity checks"):
    if getattr(result, "sanity", None) is None and result.config.sanity:
        st.info(
            "Not measured yet: the sanity check runs once every image is done, and this run "
            "stopped before that. Resume it to finish."
        )
    elif getattr(result, "sanity", None) is None:
        st.info("Not measured in this run: tick **Sanity checks** in the form and run again.")
    else:
        from cam_core.sanity_figures import sanity_figures

        for (m, lay), fig in sanity_figures(result.sanity).items():
            st.plotly_chart(fig, key=f"eval_sanity_{m}_{lay}")
        st.dataframe(result.sanity, hide_index=True, width="stretch")
with verdict_tab, _state.section("Verdict"):
    st.markdown(f"**Rule.** {verdict.RULE}")
    st.dataframe(TF.styled_verdicts(verdicts), hide_index=True, width="stretch")

with st.expander("Full summary (every metric, counts, 95 % intervals)"):
    st.dataframe(verdict.summary_with_ci(result, ci), hide_index=True, width="stretch")

st.subheader("Worst cases")
with _state.section("Worst cases"):
    ranked_by = ranking_figure(metric)
    how = (
        f"{metric_name(metric)} is a dataset figure with no value per row: rows are "
        f"ranked by their {metric_name(ranked_by)}, the per-row figure "
        "closest to it. "
        if ranked_by != metric
        else ""
    )
    st.caption(how + "Lowest figures first. Select a row, then open it on the Explore page.")
    worst = worst_cases(result.rows_frame(), metric, n=12)
    picked = st.dataframe(
        figures.worst_table(worst),  # display names; ``worst`` keeps the ids for the logic
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="worst_table",
    )
    rows = picked.selection.rows if picked is not None else []
    if rows:
        rec = worst.iloc[rows[0]]
        st.button(
            f"Open {rec['stem']} · {rec['class']} · {method_name(str(rec['method']))} in Explore",
            on_click=_open_in_explore,
            args=(str(rec["stem"]), str(rec["class"]), str(rec["method"])),
            icon=":material/open_in_new:",
            type="primary",
        )
for stem, message in result.errors[:20]:
    st.error(f"{stem}: {message}")

d1, d2, d3, d4 = st.columns(4)
d1.download_button(
    "Summary CSV",
    verdict.summary_with_ci(result, ci).to_csv(index=False),
    "cam_summary.csv",
    "text/csv",
    on_click="ignore",
    icon=":material/download:",
)
d2.download_button(
    "Rows CSV",
    result.rows_frame().to_csv(index=False),
    "cam_rows.csv",
    "text/csv",
    on_click="ignore",
    icon=":material/download:",
)
d4.download_button(
    "Verdicts CSV",
    verdicts.to_csv(index=False),
    "cam_verdicts.csv",
    "text/csv",
    on_click="ignore",
    icon=":material/download:",
)
d3.download_button(
    "HTML report",
    evaluate.build_report(result, ci=ci),
    "cam_report.html",
    "text/html",
    on_click="ignore",
    icon=":material/download:",
)
