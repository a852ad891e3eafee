"""The real app in headless Chromium: upload a NEU-DET image with its XML, two methods, the GT
panel beside one heatmap per method; then an Evaluate run. Screenshots go to
artifacts/screenshots/ (and the Explore/Evaluate ones to docs/img/ for the README).
"""

import shutil

import pytest
from _server import CHROMIUM, ROOT, launch_kwargs, neu_det, settled, streamlit_server
from _server import idle as _idle

SHOTS = ROOT / "artifacts" / "screenshots"
DOCS_IMG = ROOT / "docs" / "img"
IMAGE_STEMS = ("scratches_1", "patches_1", "crazing_1")
METHODS = ("Grad-CAM", "LayerCAM")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: run `make browser` (Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with streamlit_server(log) as running:
        yield running.url
    if running.proc.returncode not in (0, -15, 143):
        print(running.log_tail())


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


def _set_methods(page, wanted: tuple[str, ...]) -> None:
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
            settled(page)
    assert tags.all_inner_texts() == list(wanted)


def test_upload_neu_image_two_methods_then_evaluate(browser_page, server):
    root = neu_det()
    if root is None:
        pytest.skip("NEU-DET not found (set NEU_DET_DIR or put it in ../shared/NEU-DET)")
    pairs = [
        (image, root / "ANNOTATIONS" / f"{stem}.xml")
        for stem in IMAGE_STEMS
        for image in sorted((root / "IMAGES").glob(f"{stem}.*"))
    ]
    pairs = [(image, xml) for image, xml in pairs if xml.is_file()]
    if not pairs:
        pytest.skip(f"none of {IMAGE_STEMS} (image + XML) is in {root}")
    image, xml = pairs[0]
    page = browser_page
    page.goto(server)
    page.get_by_role("heading", name="Explore").wait_for()
    _idle(page)

    # the first rerun of a session resets the sidebar: choose the source, then the methods
    page.locator("[data-testid=stButtonGroup] button", has_text="Upload").click()
    page.locator("[data-testid=stFileUploader] input[type=file]").wait_for(state="attached")
    settled(page)
    _set_methods(page, METHODS)
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(
        [str(image), str(xml)]
    )
    page.get_by_text(f"GT panel: {image.name}").wait_for()
    _idle(page)
    main_captions = page.locator("[data-testid=stMain] [data-testid=stCaptionContainer]")
    captions = main_captions.all_inner_texts()
    heat = [c for c in captions if " — " in c]
    assert [c.split(" · ")[0] for c in heat] == list(METHODS), captions
    assert all("pointing" in c or "not scored" in c for c in heat)
    assert sum(c.startswith(f"GT panel: {image.name}") for c in captions) == 1
    # the GT panel and one heatmap per method, drawn by plotly (+ the probability bars)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4")
    assert page.locator(".js-plotly-plot").count() == 1 + 1 + len(METHODS)
    page.get_by_text("Ground truth ·").first.wait_for()
    page.mouse.move(900, 700)
    page.mouse.wheel(0, 250)
    page.wait_for_timeout(500)
    _shot(page, "explore", docs=True)

    page.locator("[data-testid=stSidebarNav] a", has_text="Evaluate").click()
    page.get_by_role("heading", name="Evaluate").wait_for()
    _idle(page)
    limit = page.get_by_label("Images (0 = all)")
    limit.fill("18")
    limit.press("Enter")
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_role("heading", name="Worst cases").wait_for(timeout=120_000)
    _idle(page)
    assert page.get_by_text("baselines in the right-hand columns").count() == 1
    page.mouse.move(900, 700)
    page.mouse.wheel(0, 380)
    page.wait_for_timeout(500)
    _shot(page, "evaluate", docs=True)

    page.locator("[data-testid=stSidebarNav] a", has_text="Models").click()
    page.get_by_role("heading", name="Models", exact=True).wait_for()
    _idle(page)
    _shot(page, "models")


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
    form.locator("[data-testid=stFileUploader] input[type=file]").nth(0).set_input_files(
        str(tmp_path / "ok" / "ok.pt")
    )
    form.locator("[data-testid=stFileUploader] input[type=file]").nth(1).set_input_files(
        str(tmp_path / "ok" / "ok.json")
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
