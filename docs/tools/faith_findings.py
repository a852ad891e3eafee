"""Markdown tables of docs/faithfulness.md's findings from `python -m cam_core evaluate ...
--faithfulness --sanity --out DIR` folders (their stats.csv, verdicts.csv, sanity.csv).

    python docs/tools/faith_findings.py RUNS/neu-boxsup-patch-resnet18 RUNS/neu-patch-resnet18
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

FIGS = [
    ("deletion_auc", "deletion ↓"),
    ("deletion_auc_random", "deletion, random"),
    ("insertion_auc", "insertion ↑"),
    ("insertion_auc_random", "insertion, random"),
    ("faithfulness_gain", "gain over random ↑"),
    ("road", "ROAD ↑"),
    ("avg_drop", "avg drop ↓"),
    ("increase", "increase ↑"),
]


def _ci(r: pd.Series | None, value: str = "value", lo: str = "lo", hi: str = "hi") -> str:
    if r is None or not math.isfinite(r[value]):
        return "–"
    return f"{r[value]:.2f} [{r[lo]:.2f}, {r[hi]:.2f}]"


def faith_table(stats: pd.DataFrame) -> str:
    """Faithfulness figures per class and method, "value [95 % interval]"."""
    s = stats[(stats["size"] == "all") & ~stats["method"].str.startswith("baseline:")]
    idx = s.set_index(["method", "class", "figure"])
    classes = list(dict.fromkeys(s["class"]))
    methods = list(dict.fromkeys(s["method"]))
    head = "| class | method | n | " + " | ".join(n for _, n in FIGS) + " |"
    lines = [head, "|" + "---|" * (3 + len(FIGS))]
    for c in classes:
        for m in methods:
            cells = []
            n = "–"
            for f, _ in FIGS:
                r = idx.loc[(m, c, f)] if (m, c, f) in idx.index else None
                cells.append(_ci(r))
                if r is not None:
                    n = str(int(r["n_images"]))
            lines.append(f"| {c} | {m} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_table(verdicts: pd.DataFrame) -> str:
    """The verdicts with the three components' figures."""
    lines = [
        "| class | method | verdict | energy − best baseline [95 % CI] (baseline) | "
        "faithfulness gain [CI] | sanity (|ρ| at full randomization) |",
        "|---|---|---|---|---|---|",
    ]
    for r in verdicts.to_dict("records"):
        loc = (
            f"{r['loc_diff']:+.2f} [{r['loc_lo']:+.2f}, {r['loc_hi']:+.2f}] "
            f"({str(r['loc_baseline']).removeprefix('baseline:')})"
            if math.isfinite(r["loc_diff"])
            else "–"
        )
        faith = (
            f"{r['faith_gain']:+.2f} [{r['faith_lo']:+.2f}, {r['faith_hi']:+.2f}]"
            if math.isfinite(r["faith_gain"])
            else "not measured"
        )
        san = (
            f"{r['sanity']} ({r['sanity_rho']:.2f})"
            if math.isfinite(r["sanity_rho"])
            else r["sanity"]
        )
        lines.append(
            f"| {r['class']} | {r['method']} | **{r['verdict']}** | {loc} ({r['localization']}) "
            f"| {faith} ({r['faithfulness']}) | {san} |"
        )
    return "\n".join(lines)


def sanity_table(sanity: pd.DataFrame) -> str:
    """Sanity check per (method, layer) at full randomization, and the random-logit check."""
    full = sanity[sanity["check"] == "randomization"].sort_values("depth")
    last = full.groupby(["method", "layer"], sort=False).tail(1)
    logit = sanity[sanity["check"] == "random-logit"].set_index(["method", "layer"])
    lines = [
        "| method | layer | blocks | mean |ρ| full | SSIM full | passed | random-logit |ρ| | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in last.to_dict("records"):
        key = (r["method"], r["layer"])
        lg = "–" if key not in logit.index else f"{logit.loc[key]['abs_spearman']:.2f}"
        lines.append(
            f"| {r['method']} | {r['layer']} | {r['depth']} | {r['abs_spearman']:.2f} | "
            f"{r['ssim']:.2f} | {'yes' if r['passed'] else 'no'} | "
            f"{lg} | {r['n']} |"
        )
    return "\n".join(lines)


def main(folders: list[str]) -> None:
    """Print every table of each run folder; ``FOLDER:SANITY_CSV`` takes the sanity frame from
    that CSV (a :func:`cam_core.sanity.sanity_frame` of the same images, e.g. a
    docs/tools/sanity_run.py result) and recomputes the verdicts with it.
    """
    from cam_core.verdict import verdicts

    for arg in folders:
        folder, _, sanity_csv = arg.partition(":")
        folder = Path(folder)
        print(f"\n### {folder.name}\n")
        stats = pd.read_csv(folder / "stats.csv")
        print(faith_table(stats) + "\n")
        sanity_file = Path(sanity_csv) if sanity_csv else folder / "sanity.csv"
        sanity = pd.read_csv(sanity_file) if sanity_file.is_file() else None
        if sanity is not None:
            layers = set(stats["layer"])
            sanity = sanity[sanity["layer"].isin(layers)]
            print(sanity_table(sanity) + "\n")
        model = pd.read_csv(folder / "verdicts.csv")["model"].iloc[0]
        print(verdict_table(verdicts(stats, sanity, model)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
