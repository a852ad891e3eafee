"""The PDF report, opened again and read: page count, the title, the per-class table's text.

No PDF reader is installed (pypdf, pdfminer, PyMuPDF, poppler: none; reportlab only writes), so
:func:`read_pdf` below is a minimal reader written for this test from the PDF 1.4 reference and
sharing no code with the writer: it checks the header and trailer, follows the cross-reference
table to every object, counts the ``/Type /Page`` leaves against the page tree's ``/Count``,
inflates each page's content stream (zlib) and collects the strings of its ``Tj`` / ``TJ`` text
operators. It is enough for text drawn in the standard fonts (what cam_core's PDF uses) and
fails loudly on anything else.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from cam_core.evaluation import EvalConfig, evaluate
from cam_core.evaluation.pdf import build_pdf, write_pdf
from cam_core.figures import comparison_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_OBJ = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)
_STRING = re.compile(rb"\((?:\\.|[^\\)])*\)")


def _unescape(lit: bytes) -> str:
    body = lit[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == 0x5C:  # backslash
            nxt = body[i + 1 : i + 2]
            if nxt.isdigit():
                octal = re.match(rb"[0-7]{1,3}", body[i + 1 :]).group()
                out.append(int(octal, 8))
                i += 1 + len(octal)
                continue
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(nxt, nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("latin-1")


def read_pdf(data: bytes) -> tuple[int, list[str]]:
    """(page count, text of each page) of a PDF whose text is in standard fonts."""
    assert data.startswith(b"%PDF-1."), data[:16]
    assert data.rstrip().endswith(b"%%EOF")
    start = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
    assert data[start : start + 4] == b"xref", "startxref does not point at the xref table"
    objects: dict[int, bytes] = {}
    for m in _OBJ.finditer(data):
        objects[int(m.group(1))] = m.group(2)
    head = re.match(rb"xref\s+0 (\d+)\s+", data[start:])
    entries = re.findall(
        rb"(\d{10}) (\d{5}) ([nf])", data[start : start + 40 + 20 * int(head.group(1))]
    )
    for num, (offset, _, kind) in enumerate(entries):
        if kind == b"n":  # every in-use object lies where the xref table says
            assert data[int(offset) :].startswith(f"{num} 0 obj".encode()), num
    pages = [n for n, body in objects.items() if re.search(rb"/Type\s*/Page\b", body)]
    count = [
        int(re.search(rb"/Count\s+(\d+)", b).group(1))
        for b in objects.values()
        if re.search(rb"/Type\s*/Pages\b", b)
    ]
    assert count and max(count) == len(pages), (count, len(pages))

    def stream(num: int) -> bytes:
        body = objects[num]
        raw = re.search(rb"stream\r?\n(.*?)\r?\n?endstream", body, re.S).group(1)
        filters = re.findall(rb"/(FlateDecode|ASCII85Decode)", body.split(b"stream")[0])
        for f in filters:  # applied in order
            raw = zlib.decompress(raw) if f == b"FlateDecode" else _a85(raw)
        return raw

    texts = []
    for num in sorted(pages, key=lambda n: data.index(f"{n} 0 obj".encode())):
        refs = re.search(rb"/Contents\s*(\[[^\]]*\]|\d+ 0 R)", objects[num]).group(1)
        content = b"".join(stream(int(r)) for r in re.findall(rb"(\d+) 0 R", refs))
        words = []
        for op in re.finditer(rb"(\((?:\\.|[^\\)])*\))\s*Tj|\[(.*?)\]\s*TJ", content, re.S):
            if op.group(1):
                words.append(_unescape(op.group(1)))
            else:
                words.append("".join(_unescape(s) for s in _STRING.findall(op.group(2))))
        texts.append("\n".join(words))
    return len(pages), texts


def _a85(raw: bytes) -> bytes:
    import base64

    return base64.a85decode(raw.strip().removesuffix(b"~>"), adobe=False)


@pytest.fixture(scope="module")
def result(voc: Path, checkpoint: Path):
    cfg = EvalConfig(
        data=str(voc),
        checkpoint=str(checkpoint),
        split=None,
        methods=("gradcam", "gradcam++"),
        batch_size=9,
    )
    return evaluate(cfg)


def test_the_pdf_has_its_title_settings_and_per_class_table(result) -> None:
    pdf = build_pdf(result, title="Line 7 release review")
    pages, texts = read_pdf(pdf)
    text = "\n".join(texts)
    assert pages >= 2, pages
    assert "Line 7 release review" in texts[0].splitlines()[:2]  # (the footer is drawn first)
    assert "page 1" in texts[0] and f"page {pages}" in texts[-1]
    for key, value in result.settings().items():  # the run's settings, as the HTML report has them
        if key != "checkpoint":
            assert value.replace("τ", "tau")[:40] in text, (key, value)
    # the per-class table: every class with its pointing figure of each method, as on the page
    table = comparison_table(result.summary(), "pointing")
    for cls in table.index:
        assert f"{cls}\n{int(table.loc[cls, 'n'])}\n" in text
        for value in table.loc[cls].iloc[1:]:
            assert f"{value:.3f}" in text, (cls, value)
    for name in (
        "Grad-CAM",
        "Grad-CAM++",
        "Pointing game",
        "Right for the right reason",
        "Positional bias",
    ):
        assert name in text, name
    assert "Correct class, map off the defect" in text


def test_verdicts_diff_and_partial_runs_appear_when_given(result) -> None:
    from cam_core.review.diff import diff_results
    from cam_core.verdict import verdict_table

    verdicts = verdict_table(result)
    diff = diff_results(result, result)
    partial = replace(result, complete=False, n_done=result.n_done - 1)
    pages, texts = read_pdf(build_pdf(partial, verdicts=verdicts, diff=diff))
    text = "\n".join(texts)
    assert "Partial run" in texts[0]
    assert "Verdicts" in text and verdicts["verdict"].iloc[0] in text
    assert "Release A vs release B" in text and "Images that changed: none" in text
    plain_pages, plain = read_pdf(build_pdf(result, review=False))
    assert "Verdicts" not in "".join(plain) and "Positional bias" not in "".join(plain)
    assert plain_pages < pages


def test_write_pdf_and_the_reader_refuses_a_cut_file(result, tmp_path: Path) -> None:
    path = write_pdf(result, tmp_path / "out" / "report.pdf", review=False)
    data = path.read_bytes()
    assert read_pdf(data)[0] >= 1
    with pytest.raises((AssertionError, AttributeError, zlib.error)):
        read_pdf(data[: len(data) // 2])


def test_evaluate_offers_the_pdf_of_the_results_shown(monkeypatch) -> None:
    demo = Path(__file__).resolve().parents[1] / "models" / "demo-synthetic" / "model.pt"
    if not demo.is_file():
        pytest.skip(f"bundled demo model missing ({demo})")
    from streamlit.testing.v1 import AppTest

    from pages import _evalrun

    monkeypatch.setattr("cam_core.data.find_neu_det", lambda: None)
    at = AppTest.from_file(str(demo.parents[2] / "app.py"), default_timeout=120)
    at.session_state["model_choice"] = "demo-synthetic"
    at.switch_page("pages/evaluate.py").run()
    assert not at.get("download_button") or all(
        b.proto.label != "PDF report" for b in at.get("download_button")
    )
    next(n for n in at.number_input if n.label == "Images (0 = all)").set_value(6)
    next(b for b in at.button if b.label == "Run evaluation").click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "PDF report" in labels, labels
    # what the button's deferred callable builds: the shown result's report, with verdicts
    result = at.session_state["eval_result"]
    _, texts = read_pdf(_evalrun._pdf(result, None))
    assert "CAM localization report" in texts[0] and "Verdicts" in "".join(texts)


def test_cli_evaluate_pdf_writes_the_report(voc: Path, checkpoint: Path, tmp_path: Path) -> None:
    from cam_core.cli import main

    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(voc), "--split", "all", "--checkpoint", str(checkpoint)]
    assert main([*argv, "--limit", "6", "--out", str(out), "--pdf"]) in (0, 1)
    pages, texts = read_pdf((out / "report.pdf").read_bytes())
    assert pages >= 1 and "CAM localization report" in texts[0]
