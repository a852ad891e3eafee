"""The real app in headless Chromium: upload a NEU-DET image with its XML, two methods, the GT
panel beside one heatmap per method; then an Evaluate run. Screenshots go to
artifacts/screenshots/ (and the Explore/Evaluate ones to docs/img/ for the README).
"""

import json
import shutil
from pathlib import Path

import pytest
from _server import ROOT, launch_kwargs, neu_det, settled
from playwright.sync_api import expect

SHOTS = ROOT / "artifacts" / "screenshots"
DOCS_IMG = ROOT / "docs" / "img"
IMAGE_STEMS = ("scratches_1", "patches_1", "crazing_1")
METHODS = ("Grad-CAM", "LayerCAM")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**launch_kwargs())
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1300})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def _shot(page, name: str, docs: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    if docs:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")


def _set_methods(page, wanted: tuple[str, ...], *, wait: bool = True) -> None:
    """Make the sidebar's method multiselect hold exactly ``wanted`` (labels, in order)."""
    box = page.locator("[data-testid=stSidebar] [data-testid=stMultiSelect]").first
    tags = box.locator("[data-tag] [title]")
    have = tags.all_inner_texts()
    keep = 0  # the longest prefix already in the wanted order stays; the rest goes
    while keep < min(len(have), len(wanted)) and have[keep] == wanted[keep]:
        keep += 1
    for label in have[keep:]:
        box.get_by_role("button", name=f"Remove {label}", exact=True).click()
        settled(page)
    for label in wanted:
        if label not in tags.all_inner_texts():
            box.locator("input").click()
            page.get_by_role("option", name=label, exact=True).click()
            page.keyboard.press("Escape")
            if wait or label != wanted[-1]:
                settled(page)
    # the last tag may render a moment after its option's click (wait=False settles nothing)
    expect(tags).to_have_text(list(wanted), timeout=30_000)


def test_a_fresh_servers_first_request_to_a_page_address_gets_the_app(browser_page, server):
    """Runs first in this module: a fresh server's first request opens ``/evaluate`` directly
    (a bookmark). Streamlit's legacy pages/ route would run the page without app.py (no menu,
    no sidebar); the page must come with the app's menu and its sidebar."""
    page = browser_page
    page.goto(f"{server}/evaluate")
    page.get_by_role("heading", name="Evaluate").wait_for()
    settled(page)
    nav = [t.split()[-1] for t in page.locator("[data-testid=stSidebarNav] a").all_inner_texts()]
    assert nav == ["Explore", "Compare", "Evaluate", "Review", "Models", "Present"], nav
    assert page.locator("[data-testid=stSidebar]").get_by_text("Dataset folder").count() == 1


def _test_images(root, classes=("scratches", "inclusion", "patches")) -> list[tuple[Path, Path]]:
    """One test-split image (never in a training set) of each of ``classes``, with its XML;
    the first is the one drawn after the upload (and in the README's screenshot)."""
    from cam_core.data import load_dataset

    picked: dict[str, tuple[Path, Path]] = {}
    for sample in load_dataset(root, split="test").samples:
        xml = root / "ANNOTATIONS" / f"{sample.stem}.xml"
        if sample.label in classes and sample.label not in picked and xml.is_file():
            picked[sample.label] = (sample.path, xml)
    return [picked[c] for c in classes if c in picked]


def _shown(selectbox) -> str:
    """What a selectbox shows: its text and the value of its input."""
    values = [i.input_value() for i in selectbox.locator("input").all()]
    return " ".join([selectbox.text_content() or "", *values])


def _errors(page) -> list[str]:
    """Exceptions Streamlit drew on the page (a crashed section)."""
    return page.locator("[data-testid=stException]").all_inner_texts()


def test_newcomer_walk(browser_page, server, tmp_path):
    """Issue 14's walk: dataset landing → upload three images with XML → add a slow method
    (earlier panels stay) → Evaluate 30 images → every metric → Stop a second run (partial,
    labelled, rows kept) → Models: checkpoint and card dropped together → the sidebar shows the
    card's name and recommended layer."""
    root = neu_det()
    if root is None:
        pytest.skip("NEU-DET not found (set NEU_DET_DIR or put it in ../shared/NEU-DET)")
    pairs = _test_images(root)
    assert len(pairs) == 3, pairs
    page = browser_page
    page.goto(server)
    page.get_by_role("heading", name="Explore").wait_for()
    settled(page)
    sidebar = page.locator("[data-testid=stSidebar]")
    # landing on the dataset with the real-data model, on an image whose map is drawn
    model_shown = _shown(sidebar.locator("[data-testid=stSelectbox]").first)
    assert "neu-" in model_shown and "synthetic" not in model_shown, model_shown
    page.get_by_text("GT panel:").first.wait_for()
    _shot(page, "explore_landing")
    assert not _errors(page)

    # three unseen images with their XML, dropped together
    page.locator("[data-testid=stButtonGroup] button", has_text="Upload").click()
    uploader = page.locator("[data-testid=stMain] [data-testid=stFileUploader] input[type=file]")
    uploader.wait_for(state="attached")
    settled(page)
    _set_methods(page, METHODS)
    uploader.set_input_files([str(f) for pair in pairs for f in pair])
    page.get_by_text("Uploaded image (3 in this session)").wait_for()
    settled(page)
    first = page.get_by_text("GT panel:").first.inner_text()
    assert any(image.name in first for image, _ in pairs), first
    main = page.locator("[data-testid=stMain]")
    heat = [
        c for c in main.locator("[data-testid=stCaptionContainer]").all_inner_texts() if " — " in c
    ]
    assert {c.split(" · ")[0] for c in heat} == set(METHODS), heat
    page.mouse.move(900, 700)
    page.mouse.wheel(0, 250)
    page.wait_for_timeout(500)
    _shot(page, "explore", docs=True)

    # a slow method: the panels already drawn stay while it is computed into its place
    before = main.get_by_text(f"{METHODS[0]} ·", exact=False).count()
    _set_methods(page, (*METHODS, "Score-CAM (slow)"), wait=False)
    page.get_by_text("Computing Score-CAM", exact=False).first.wait_for(timeout=60_000)
    assert main.get_by_text(f"{METHODS[0]} ·", exact=False).count() >= before > 0
    _shot(page, "explore_slow_method_running")
    settled(page, timeout_ms=240_000)
    heat = [
        c for c in main.locator("[data-testid=stCaptionContainer]").all_inner_texts() if " — " in c
    ]
    assert any(c.startswith("Score-CAM ·") for c in heat), heat
    assert not _errors(page)

    # Evaluate 30 images, then every metric of the segmented control
    page.locator("[data-testid=stSidebarNav] a", has_text="Evaluate").click()
    page.get_by_role("heading", name="Evaluate").wait_for()
    settled(page)
    limit = page.get_by_label("Images (0 = all)")
    limit.fill("30")
    limit.press("Enter")
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_text("Done", exact=False).first.wait_for(timeout=300_000)
    page.get_by_role("heading", name="Worst cases").wait_for()
    settled(page)
    metrics = page.locator("[data-testid=stMain] [data-testid=stButtonGroup]").first
    labels = metrics.locator("button").all_inner_texts()
    assert len(labels) >= 5, labels
    for label in labels:
        metrics.locator("button", has_text=label).first.click()
        settled(page)
        assert not _errors(page), (label, _errors(page))
        assert page.get_by_role("button", name="HTML report").count() == 1, label
    metrics.locator("button").first.click()
    settled(page)
    page.mouse.move(900, 700)
    page.mouse.wheel(0, 380)
    page.wait_for_timeout(500)
    _shot(page, "evaluate", docs=True)

    # a second, whole-split run stopped by our own button: a labelled partial result, rows kept
    page.mouse.wheel(0, -5000)
    limit.fill("0")
    limit.press("Enter")
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_text("Running", exact=False).first.wait_for()
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=stAlertContainer]')]"
        ".some(e => /Running\\D+[1-9]\\d* of/.test(e.innerText))",
        timeout=180_000,
    )
    page.get_by_role("button", name="Stop").click()
    partial = page.locator("[data-testid=stAlertContainer]", has_text="Partial result").first
    partial.wait_for(timeout=120_000)
    settled(page)
    text = partial.inner_text()
    assert "covers" in text and "stopped" in text.lower(), text
    assert page.get_by_role("button", name="Resume").count() == 1
    assert not _errors(page)
    _shot(page, "evaluate_stopped")

    # Models: a checkpoint and its card dropped together
    bundled = ROOT / "models" / "neu-local-resnet18"
    card = json.loads((bundled / "model.json").read_text())
    card["name"] = "plant-release-7"
    (tmp_path / "model.json").write_text(json.dumps(card))
    shutil.copyfile(bundled / "model.pt", tmp_path / "model.pt")
    page.locator("[data-testid=stSidebarNav] a", has_text="Models").click()
    page.get_by_role("heading", name="Models", exact=True).wait_for()
    settled(page)
    form = page.locator("[data-testid=stForm]").first
    form.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(
        [str(tmp_path / "model.pt"), str(tmp_path / "model.json")]
    )
    for name in ("model.pt", "model.json"):
        _uploaded(form, name)
    settled(page)
    form.get_by_role("button", name="Load checkpoint").click()
    page.get_by_text("plant-release-7", exact=False).first.wait_for()
    settled(page)
    _shot(page, "models")
    model_shown = _shown(sidebar.locator("[data-testid=stSelectbox]").first)
    assert "plant-release-7 (uploaded)" in model_shown, model_shown
    layer_shown = _shown(sidebar.locator("[data-testid=stSelectbox]", has_text="Target layer"))
    assert card["recommended"]["layer"] in layer_shown, layer_shown
    assert not _errors(page)


class _Payload:
    """Unpickling this would create ``marker``: the app must refuse it without running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _uploaded(scope, name: str) -> None:
    """Wait until ``name``'s file chip is shown and no upload spinner is left in ``scope``."""
    scope.locator("[data-testid=stFileChip]", has_text=name).wait_for()
    scope.page.wait_for_function(
        "document.querySelectorAll('[data-testid=stFileChipIconSpinner]').length === 0"
    )


def test_hostile_checkpoints_are_named_and_refused_then_a_good_one_loads(
    browser_page, server, tmp_path
):
    import torch

    from cam_core.data import NEU_CLASSES
    from cam_core.models import ModelCard, build_model, save_model

    marker = tmp_path / "pwned"
    good = build_model("local_resnet18", 6).state_dict()
    files = {}
    files["evil.pt"] = {"conv1.weight": torch.zeros(1), "payload": _Payload(marker)}
    files["nan.pt"] = {k: v.clone() for k, v in good.items()}
    files["nan.pt"]["conv1.weight"][0] = float("nan")
    files["five.pt"] = good
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
    whole = (tmp_path / "five.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    card = ModelCard(
        name="browser-ok",
        arch="local_resnet18",
        classes=NEU_CLASSES,
        multilabel=False,
        input_size=64,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    save_model(build_model("local_resnet18", 6), card, tmp_path / "ok" / "ok.pt")
    expected = {  # file → (arch chosen, class names typed, what the error must say)
        "evil.pt": ("guess from the weights", None, "would execute code"),
        "nan.pt": ("local_resnet18", None, "contains NaN or inf"),
        "five.pt": ("local_resnet18", "a, b, c, d, e", "has 6 outputs but 5 class names"),
        "cut.pt": ("local_resnet18", None, "not a readable PyTorch checkpoint"),
        "empty.pt": ("local_resnet18", None, "checkpoint file is empty"),
    }
    page = browser_page
    page.goto(server)
    page.locator("[data-testid=stSidebarNav] a", has_text="Models").click()
    page.get_by_role("heading", name="Models", exact=True).wait_for()
    settled(page)
    form = page.locator("[data-testid=stForm]").first
    for name, (arch, classes, message) in expected.items():
        form.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(
            str(tmp_path / name)
        )
        _uploaded(form, name)
        form.locator("[data-testid=stSelectbox] input").first.click()
        page.keyboard.type(arch)  # the dropdown filters as one types; Enter takes the match
        page.keyboard.press("Enter")
        form.locator("textarea").fill(classes or ", ".join(NEU_CLASSES))
        form.get_by_role("button", name="Load checkpoint").click()
        settled(page)
        alert = page.locator("[data-testid=stAlertContentError]", has_text=name)
        alert.wait_for()
        assert message in alert.inner_text(), alert.inner_text()
        assert not marker.exists(), "the pickle's payload ran"
    # the checkpoint box keeps earlier files: clear them, then drop the checkpoint and its card
    for remove in form.locator("[data-testid=stFileUploaderDeleteBtn] button").all()[::-1]:
        remove.click()
    settled(page)
    form.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(
        [str(tmp_path / "ok" / "ok.pt"), str(tmp_path / "ok" / "ok.json")]
    )
    for name in ("ok.pt", "ok.json"):  # both uploads finished before the form is submitted
        _uploaded(form, name)
    settled(page)
    form.get_by_role("button", name="Load checkpoint").click()
    try:
        page.get_by_text("ok.pt loaded").wait_for()
    except Exception:
        _shot(page, "models_good_checkpoint_failed")
        raise
    settled(page)
    assert page.locator("[data-testid=stAlertContentError]").count() == 0
    _shot(page, "models_after_hostile_checkpoints")


def _upload_zip(tmp_path: Path, n_per_class: int = 2) -> tuple[Path, int]:
    """A zip of 12 images with their VOC XML in one folder: NEU-DET test-split images (two per
    class) when NEU-DET is here, else synthetic ones (cam_core.synth)."""
    import zipfile

    root = neu_det()
    pairs: list[tuple[Path, Path]] = []
    if root is not None:
        from cam_core.data import load_dataset

        per: dict[str, int] = {}
        for sample in load_dataset(root, split="test").samples:
            xml = root / "ANNOTATIONS" / f"{sample.stem}.xml"
            if xml.is_file() and per.get(sample.label, 0) < n_per_class:
                per[sample.label] = per.get(sample.label, 0) + 1
                pairs.append((sample.path, xml))
    else:
        from cam_core.synth import write_voc_folder

        folder = write_voc_folder(tmp_path / "synth", n_per_class, seed=3, size=200)
        pairs = [
            (img, folder / "ANNOTATIONS" / f"{img.stem}.xml")
            for img in sorted((folder / "IMAGES").iterdir())
        ]
    out = tmp_path / "line-7-batch.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for image, xml in pairs:
            zf.write(image, f"line-7-batch/{image.name}")
            zf.write(xml, f"line-7-batch/{xml.name}")
    return out, len(pairs)


def _read_pdf():
    """tests/test_pdf.py's minimal PDF reader (no PDF library is installed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_pdf_reader", ROOT / "tests" / "test_pdf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_pdf


def _images_loaded(page) -> None:
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")


def test_upload_a_zip_evaluate_review_explore_pdf_and_present(browser_page, server, tmp_path):
    """Issue 18's walk: a zip of 12 images with XML dropped in the sidebar → evaluated whole →
    Review's "correct class, map off the defect" gallery → one of its images opened on Explore →
    the PDF report downloaded and read → a hostile zip named, the session still working → demo
    mode at 1280 x 720."""
    archive, n = _upload_zip(tmp_path)
    assert n == 12, n
    page = browser_page
    page.set_viewport_size({"width": 1440, "height": 1300})
    # on Evaluate (Explore's landing would draw NEU-DET maps meanwhile: minutes on 2 busy cores)
    page.goto(f"{server}/evaluate")
    page.get_by_role("heading", name="Evaluate").wait_for(timeout=240_000)  # a cold server
    settled(page, timeout_ms=240_000)
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(archive))
    sidebar.get_by_text(f"uploaded line-7-batch.zip · {n} images", exact=False).wait_for()
    settled(page, timeout_ms=240_000)
    assert not _errors(page)
    data_line = page.locator("[data-testid=stMarkdownContainer]", has_text="Data:").first
    data_line = data_line.inner_text()
    assert "line-7-batch.zip" in data_line and f"{n} images" in data_line, data_line
    assert "cam-core-uploads" not in data_line  # the upload's name, not our temp folder
    limit = page.get_by_label("Images (0 = all)")
    limit.fill("0")
    limit.press("Enter")
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_text(f"Done — {n} images", exact=False).first.wait_for(timeout=400_000)
    settled(page)
    _shot(page, "evaluate_uploaded_zip")
    assert not _errors(page)

    # Review: the "correct class, map off the defect" gallery, then one image on Explore
    page.locator("[data-testid=stSidebarNav] a", has_text="Review").click()
    page.get_by_role("heading", name="Review").wait_for()
    settled(page, timeout_ms=240_000)
    gallery = page.get_by_text("· Correct class, map off the defect ·", exact=False).first
    gallery.wait_for()
    rows = int(gallery.inner_text().split(" rows")[0].split()[-1])
    if rows == 0:  # none off the defect here: any quadrant with images is opened instead
        box = page.locator("[data-testid=stSelectbox]", has_text="Gallery")
        box.locator("input").click()
        page.get_by_role("option", name="Correct class, map on the defect").click()
        settled(page, timeout_ms=240_000)
    _images_loaded(page)
    _shot(page, "review_off_the_defect_gallery")
    opener = page.get_by_role("button", name="Open in Explore").first
    opener.scroll_into_view_if_needed()
    opener.click()
    page.get_by_role("heading", name="Explore").wait_for()
    settled(page, timeout_ms=240_000)
    page.get_by_text("GT panel:").first.wait_for()
    assert page.get_by_text("Opened from", exact=False).count() >= 1
    assert not _errors(page)
    _shot(page, "explore_from_review")

    # the PDF report of the run (results kept across the page switches)
    page.locator("[data-testid=stSidebarNav] a", has_text="Evaluate").click()
    page.get_by_role("heading", name="Results").wait_for()
    settled(page)
    with page.expect_download(timeout=240_000) as info:
        page.get_by_role("button", name="PDF report").click()
    pdf = SHOTS.parent / "report.pdf"
    info.value.save_as(str(pdf))
    pages, texts = _read_pdf()(pdf.read_bytes())
    text = "\n".join(texts)
    assert pages >= 2 and "CAM localization report" in texts[0], (pages, texts[0][:200])
    from cam_core.vocabulary import metric_name

    assert f"{metric_name('pointing')} per class" in text, text[:600]
    assert "Right for the right reason" in text and "Positional bias" in text
    assert f"{n} of {n}" in text

    # a hostile zip: named in the sidebar; the upload before it stays in use
    bad = tmp_path / "evil.zip"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    sidebar.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(str(bad))
    sidebar.get_by_text("evil.zip: not a readable zip archive", exact=False).wait_for()
    settled(page)
    assert sidebar.get_by_text("uploaded line-7-batch.zip", exact=False).count() == 1
    assert page.get_by_role("heading", name="Results").count() == 1
    assert not _errors(page)
    _shot(page, "upload_refused")

    # demo mode on a projector: 1280 x 720, the sidebar hidden, → steps
    page.locator("[data-testid=stSidebarNav] a", has_text="Present").click()
    page.set_viewport_size({"width": 1280, "height": 720})
    page.locator(".present-head").wait_for()
    settled(page, timeout_ms=240_000)
    _images_loaded(page)
    assert not sidebar.is_visible()
    first = page.locator(".present-head").inner_text()
    assert first.startswith("1 / "), first
    _shot(page, "present", docs=True)
    box = page.locator("[data-testid=stImage] img").last.bounding_box()
    assert box["y"] + box["height"] <= 720, box  # the panels fit the projector
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "document.querySelector('.present-head')?.innerText.startsWith('2 / ')", timeout=240_000
    )
    settled(page, timeout_ms=240_000)
    assert not _errors(page)
    page.set_viewport_size({"width": 1440, "height": 1300})
