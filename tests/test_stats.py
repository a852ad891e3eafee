"""cam_core.metrics.stats: the image bootstrap, against scipy.stats.bootstrap (the independent
oracle) on plain means and on a ratio of per-image sums; the dataset figures recomputed from
resampled parts against the accumulators and scikit-learn; the table on a real evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import average_precision_score

from cam_core import metrics as M
from cam_core.evaluation import BASELINES, EvalConfig, evaluate
from cam_core.metrics import stats as S
from cam_core.vocabulary import MAP_METRICS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bootstrap_mean_matches_scipy_percentile_interval():
    x = np.random.default_rng(3).gamma(2.0, 0.2, size=150)  # skewed, like a per-image figure
    ours = S.bootstrap_mean(x, n_boot=5000, seed=1)
    ref = scipy_stats.bootstrap(
        (x,), np.mean, n_resamples=5000, method="percentile", random_state=7
    ).confidence_interval
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert ours.value == pytest.approx(x.mean())
    # two independent Monte-Carlo runs of the same interval: within 0.1 standard errors
    assert ours.lo == pytest.approx(ref.low, abs=0.1 * se)
    assert ours.hi == pytest.approx(ref.high, abs=0.1 * se)
    assert ours.lo < x.mean() < ours.hi


def test_rows_of_one_image_move_together_like_scipy_paired_bootstrap():
    """Two rows per image, strongly correlated within the image: the table's interval of the
    pooled mean equals scipy's paired bootstrap of sum(values) / sum(counts) over images."""
    rng = np.random.default_rng(0)
    n = 120
    img = rng.normal(0.5, 0.2, n)
    a, b = img + rng.normal(0, 0.02, n), img + rng.normal(0, 0.02, n)
    rows = pd.DataFrame(
        {
            "stem": [f"s{i:03d}" for i in range(n)] * 2,
            "class": ["c1"] * n + ["c2"] * n,
            "method": "m",
            "layer": "L",
            "error": None,
            "box_share": 0.3,
            "energy": np.concatenate([a, b]),
        }
    )
    table = S.bootstrap_table(rows, {}, ["energy"], [], by_size=False, n_boot=4000, seed=2)
    got = table[(table["class"] == "all") & (table["figure"] == "energy")].iloc[0]
    ref = scipy_stats.bootstrap(
        (a + b, np.full(n, 2.0)),
        lambda s, c: s.sum() / c.sum(),
        paired=True,
        vectorized=False,
        n_resamples=4000,
        method="percentile",
        random_state=5,
    ).confidence_interval
    se = (a + b).std(ddof=1) / 2 / np.sqrt(n)
    assert got["value"] == pytest.approx((a.sum() + b.sum()) / (2 * n))
    assert got["lo"] == pytest.approx(ref.low, abs=0.12 * se)
    assert got["hi"] == pytest.approx(ref.high, abs=0.12 * se)
    # rows resampled one by one (ignoring that they share an image) would be ~1/sqrt(2) as wide
    row_ci = S.bootstrap_mean(np.concatenate([a, b]), n_boot=4000, seed=2)
    assert (row_ci.hi - row_ci.lo) < 0.8 * (got["hi"] - got["lo"])


def test_intervals_are_seeded():
    x = np.random.default_rng(1).random(50)
    assert S.bootstrap_mean(x, seed=4) == S.bootstrap_mean(x, seed=4)
    assert S.bootstrap_mean(x, seed=4) != S.bootstrap_mean(x, seed=5)
    w = S.resample_counts(30, 200, seed=0)
    assert w.shape == (200, 30) and (w.sum(axis=1) == 30).all()


def test_dataset_figures_from_parts_match_accumulators_and_sklearn():
    rng = np.random.default_rng(4)
    acc, pxap = M.MaxBoxAccV2(), M.PxAP(100)
    hits, pos, neg = [], [], []
    maps = []
    for _ in range(25):
        best = rng.random(acc.thresholds.size)
        acc.add_best_ious(best)
        h, _, _ = S.image_parts(acc.deltas, {"_best_ious": best, "_pos": [0], "_neg": [0]})
        hits.append(h)
        cam = rng.random((20, 20)) ** 2
        boxes = [_box(rng)]
        p, q = pxap.histograms(cam, boxes)
        pxap.add_histograms(p, q)
        pos.append(p)
        neg.append(q)
        maps.append((cam, M.box_mask(boxes, cam.shape)))
    got = S.maxboxacc_from_hits(np.sum(hits, axis=0), np.asarray(25))
    assert float(got) == pytest.approx(acc.compute()["maxboxacc_v2"])
    ap = float(S.pxap_from_histograms(np.sum(pos, axis=0), np.sum(neg, axis=0)))
    assert ap == pytest.approx(pxap.compute()["pxap"])
    # scikit-learn's AP on the binned pixel scores (the accumulator's 100 bins)
    score = np.concatenate([np.floor(c.ravel() * 100) for c, _ in maps])
    truth = np.concatenate([m.ravel() for _, m in maps])
    assert ap == pytest.approx(average_precision_score(truth, score), abs=1e-9)


def _box(rng):
    from cam_core.data import Box

    x0, y0 = rng.integers(0, 10, 2)
    return Box("c", float(x0), float(y0), float(x0 + 8), float(y0 + 8))


def test_size_bins():
    assert S.size_bin(0.05) == "< 10 %"
    assert S.size_bin(0.10) == "10–50 %"
    assert S.size_bin(0.5) == "> 50 %"
    assert S.size_bin(1.0) == "> 50 %"
    assert S.size_bin(0.0) is None and S.size_bin(None) is None
    with pytest.raises(ValueError, match="box share"):
        S.size_bin(1.5)


def test_table_on_an_evaluation_matches_its_summary(voc, checkpoint):
    cfg = EvalConfig(data=str(voc), checkpoint=str(checkpoint), split=None, methods=("gradcam",))
    result = evaluate(cfg)
    assert all(0.0 < r["box_share"] <= 1.0 for r in result.rows if r["n_boxes"])
    parts = {k: a.parts for k, a in result.accumulators.items() if k[2] != "all"}
    table = S.bootstrap_table(
        result.rows_frame(), parts, list(MAP_METRICS), list(BASELINES), n_boot=200
    )
    pooled = table[table["size"] == "all"].set_index(["method", "layer", "class", "figure"])
    summary = result.summary()
    checked = 0
    for rec in summary.to_dict("records"):
        for fig in [*MAP_METRICS, "maxboxacc_v2", "pxap"]:
            if np.isnan(rec[fig]):
                continue
            got = pooled.loc[(rec["method"], rec["layer"], rec["class"], fig)]
            assert got["value"] == pytest.approx(rec[fig]), (rec["method"], rec["class"], fig)
            assert got["lo"] <= got["value"] + 1e-12 and got["value"] <= got["hi"] + 1e-12
            checked += 1
    assert checked > 50
    # methods carry a paired difference against a baseline; baselines do not
    meth = table[(table["method"] == "gradcam") & (table["figure"] == "energy")]
    assert meth["baseline"].isin(list(BASELINES)).all() and meth["diff"].notna().all()
    assert table[table["method"].isin(list(BASELINES))]["diff"].isna().all()
    assert set(table["size"]) >= {"all"} and set(table["size"]) - {"all"} <= {
        b[0] for b in S.SIZE_BINS
    }
