"""cam_core.verdict: planted methods whose verdict is known — clearly above the baseline and
faithful and sane → green; equal to the baseline → not green; below it → red; a component not
run → at most amber."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cam_core import verdict as V
from cam_core.metrics import stats as S

BASE = "baseline:uniform"
N = 40


def _rows(methods: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """N images of class "a": per method (energy shift over the baseline, faithfulness gain)."""
    rng = np.random.default_rng(0)
    stems = [f"img{i:02d}" for i in range(N)]
    energy = rng.uniform(0.2, 0.6, N)  # the baseline's energy (the box share)
    out = [
        pd.DataFrame(
            {"stem": stems, "method": BASE, "layer": "-", "energy": energy, "box_share": energy}
        )
    ]
    for m, (shift, gain) in methods.items():
        noise = rng.normal(0.0, 0.05, N)
        ins, dele = rng.uniform(0.4, 0.8, N), rng.uniform(0.1, 0.3, N)
        rand_gap = (ins - dele) - gain + rng.normal(0.0, 0.02, N)
        out.append(
            pd.DataFrame(
                {
                    "stem": stems,
                    "method": m,
                    "layer": "L",
                    "energy": energy + shift + (noise if shift else 0.0),
                    "box_share": energy,
                    "insertion_auc": ins,
                    "deletion_auc": dele,
                    "insertion_auc_random": rand_gap + 0.2,
                    "deletion_auc_random": np.full(N, 0.2),
                }
            )
        )
    rows = pd.concat(out, ignore_index=True).assign(**{"class": "a", "error": None})
    rows[V.FAITHFULNESS_FIGURE] = V.faithfulness_gain(rows)
    return rows


def _ci(rows: pd.DataFrame) -> pd.DataFrame:
    return S.bootstrap_table(
        rows, {}, ["energy", V.FAITHFULNESS_FIGURE], [BASE], by_size=False, n_boot=500
    )


def _sanity(passed: dict[str, bool]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "method": m,
                "layer": "L",
                "check": "randomization",
                "depth": d,
                "passed": ok,
                "abs_spearman": 1.0 if d == 0 else (0.1 if ok else 0.9),
            }
            for m, ok in passed.items()
            for d in (0, 1, 2)
        ]
    )


def _one(table: pd.DataFrame, method: str, cls: str = "a") -> pd.Series:
    return table[(table["method"] == method) & (table["class"] == cls)].iloc[0]


def test_planted_verdicts():
    rows = _rows({"good": (0.25, 0.15), "same": (0.0, 0.15), "worse": (-0.2, 0.15)})
    table = V.verdicts(_ci(rows), _sanity({"good": True, "same": True, "worse": True}), "toy")
    good, same, worse = (_one(table, m) for m in ("good", "same", "worse"))
    assert good["loc_lo"] > 0 and good["localization"] == "pass"
    assert good["faith_lo"] > 0 and good["faithfulness"] == "pass"
    assert good["verdict"] == "green" and good["why"] == "all pass"
    assert good["loc_baseline"] == BASE and good["model"] == "toy"
    # identical to the baseline on every image: difference 0, interval [0, 0] contains 0
    assert same["loc_diff"] == pytest.approx(0.0) and same["localization"] == "unclear"
    assert same["verdict"] == "amber" and "localization unclear" in same["why"]
    assert worse["loc_hi"] < 0 and worse["verdict"] == "red"
    assert set(table["class"]) == {"a", "all"}


def test_unfaithful_or_insane_map_is_not_green():
    rows = _rows({"random_order": (0.25, 0.0), "edge": (0.25, 0.15), "anti": (0.25, -0.2)})
    ci = _ci(rows)
    table = V.verdicts(ci, _sanity({"random_order": True, "edge": False, "anti": True}), "toy")
    # a map no better than a random pixel order: faithfulness unclear → amber
    assert _one(table, "random_order")["faithfulness"] == "unclear"
    assert _one(table, "random_order")["verdict"] == "amber"
    # on the boxes and faithful but unchanged by randomising the model: red
    assert _one(table, "edge")["sanity"] == "fail" and _one(table, "edge")["verdict"] == "red"
    assert _one(table, "edge")["sanity_rho"] == pytest.approx(0.9)
    # worse than a random order: red
    assert _one(table, "anti")["faithfulness"] == "fail" and _one(table, "anti")["verdict"] == "red"


def test_components_not_run_give_at_most_amber():
    rows = _rows({"good": (0.25, 0.15)})
    no_faith = rows.drop(columns=[*V.FAITHFULNESS_COLUMNS[:4], V.FAITHFULNESS_FIGURE])
    table = V.verdicts(_ci(no_faith), None, "toy")
    good = _one(table, "good")
    assert good["localization"] == "pass"
    assert good["faithfulness"] == "not measured" and good["sanity"] == "not measured"
    assert good["verdict"] == "amber"
    assert "not run" in V.RULE and "at most amber" in V.RULE


def test_too_few_images_decide_nothing():
    rows = _rows({"good": (0.25, 0.15)})
    few = rows[rows["stem"].isin(["img00", "img01"])]  # two images: zero-width-ish intervals
    good = _one(V.verdicts(_ci(few), _sanity({"good": True}), "toy"), "good")
    assert good["localization"] == "unclear" and good["faithfulness"] == "unclear"
    assert good["verdict"] == "amber" and "only 2 images" in good["why"]


def test_sanity_on_few_images_or_across_the_line_is_unclear():
    rows = _rows({"good": (0.25, 0.15)})
    ci = _ci(rows)
    few = _sanity({"good": True}).assign(n=3)
    assert _one(V.verdicts(ci, few, "toy"), "good")["sanity"] == "unclear"
    straddle = _sanity({"good": True}).assign(n=8, ci_low=0.3, ci_high=0.6, threshold=0.5)
    assert _one(V.verdicts(ci, straddle, "toy"), "good")["verdict"] == "amber"
    settled = straddle.assign(ci_high=0.45)
    assert _one(V.verdicts(ci, settled, "toy"), "good")["verdict"] == "green"


def test_faithfulness_gain_needs_all_four_columns():
    rows = pd.DataFrame({"insertion_auc": [0.8], "deletion_auc": [0.1]})
    assert V.faithfulness_gain(rows).isna().all()
    rows = rows.assign(insertion_auc_random=[0.5], deletion_auc_random=[0.3])
    assert V.faithfulness_gain(rows).iloc[0] == pytest.approx(0.7 - 0.2)


def test_a_run_with_faithfulness_and_sanity_gets_every_component(voc, checkpoint, tmp_path):
    """End to end on a tiny untrained net: every component measured (pass, fail or unclear,
    never "not measured"), the verdict follows the rule, and the run's files carry it all."""
    import torch

    from cam_core.evaluation import EvalConfig, evaluate
    from cam_core.evaluation.report import write_outputs

    torch.set_num_threads(1)
    cfg = EvalConfig(
        data=str(voc),
        checkpoint=str(checkpoint),
        split=None,
        methods=("gradcam",),
        limit=3,
        faithfulness=True,
        faith_steps=5,
        sanity=True,
        sanity_images=1,
    )
    result = evaluate(cfg)
    paths = write_outputs(result, tmp_path / "out")
    table = pd.read_csv(paths["verdicts.csv"])
    assert set(table["class"]) >= {"all"} and (table["method"] == "gradcam").all()
    for part in ("localization", "sanity"):
        assert not (table[part] == "not measured").any(), part
    # faithfulness is "not measured" exactly for a class whose every map is blank (untrained net)
    rows = pd.DataFrame(result.rows)
    rows = rows[rows["method"] == "gradcam"]
    blank = {c for c, g in rows.groupby("class") if g["deletion_auc"].isna().all()}
    unmeasured = set(table.loc[table["faithfulness"] == "not measured", "class"])
    assert unmeasured == blank and "all" not in unmeasured, (unmeasured, blank)
    for rec in table.to_dict("records"):
        parts = [rec["localization"], rec["faithfulness"], rec["sanity"]]
        expect = "green" if set(parts) == {"pass"} else "red" if "fail" in parts else "amber"
        assert rec["verdict"] == expect
    stats = pd.read_csv(paths["stats.csv"])
    assert {"road", "insertion_auc", V.FAITHFULNESS_FIGURE} <= set(stats["figure"])
    summary = pd.read_csv(paths["summary.csv"])
    assert {"energy_lo", "energy_hi", "energy_diff_lo", "road_lo"} <= set(summary.columns)
    html = paths["report.html"].read_text()
    assert "Verdict" in html and V.RULE[:40] in html and "Sanity checks" in html
