"""Bring your own model in the real app: a zipped hub folder of a small timm ViT (config.json
+ model.safetensors, written by timm's own ``save_for_hf``) uploaded on the Models page, its
layers found by the shape probe shown, then its maps on Explore. A zip with a bad entry is
refused first, naming the entry. Screenshots go to artifacts/screenshots/.
"""

import zipfile

import pytest
from _server import ROOT, launch_kwargs, settled

SHOTS = ROOT / "artifacts" / "screenshots"
NEU = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
TINY_VIT = {"img_size": 64, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}

pytestmark = pytest.mark.e2e


def _hub_zip(tmp_path):
    """``plant-vit.zip``: one folder holding timm's hub layout of a tiny random ViT."""
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=6, **TINY_VIT)
    folder = tmp_path / "plant-vit"
    save_for_hf(
        model,
        str(folder),
        model_config={"label_names": list(NEU)},
        model_args=TINY_VIT,
        safe_serialization=True,
        data_config={"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.25,) * 3},
    )
    archive = tmp_path / "plant-vit.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"plant-vit/{f.name}")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape/config.json", "{}")
    return archive, evil


def _drop(page, path, button="Load checkpoint"):
    form = page.locator("[data-testid=stForm]").first
    for remove in form.locator("[data-testid=stFileUploaderDeleteBtn] button").all()[::-1]:
        remove.click()
    form.locator("[data-testid=stFileUploader] input[type=file]").first.set_input_files(str(path))
    form.locator("[data-testid=stFileChip]", has_text=path.name).wait_for()
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stFileChipIconSpinner]').length === 0"
    )
    settled(page)
    form.get_by_role("button", name=button).click()
    settled(page)


def test_a_zipped_timm_hub_folder_loads_and_its_maps_show(server, tmp_path):
    from playwright.sync_api import sync_playwright

    archive, evil = _hub_zip(tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(**launch_kwargs())
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1300})
            page.set_default_timeout(120_000)
            page.goto(server)
            page.get_by_role("heading", name="Explore").wait_for(timeout=300_000)
            settled(page, timeout_ms=300_000)
            page.locator("[data-testid=stSidebarNav] a", has_text="Models").click()
            page.get_by_role("heading", name="Models", exact=True).wait_for()
            settled(page)
            # timm's names can be searched
            search = page.get_by_role("textbox", name="Find a timm architecture")
            search.fill("vit tiny patch16")
            search.press("Enter")
            page.get_by_text("timm architectures match", exact=False).wait_for()

            _drop(page, evil)
            alert = page.locator("[data-testid=stAlertContentError]", has_text="evil.zip")
            alert.wait_for()
            assert "outside the upload folder" in alert.inner_text(), alert.inner_text()
            assert not (ROOT.parent / "escape").exists()

            _drop(page, archive)
            page.get_by_text("plant-vit.zip loaded as", exact=False).wait_for()
            settled(page)
            page.get_by_text("Layers found", exact=False).first.click()
            page.get_by_text(
                "block, tokens (1 dropped) on a 8×8 grid", exact=False
            ).first.wait_for()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "models_byom_hub_zip.png"))
            sidebar = page.locator("[data-testid=stSidebar]")
            box = sidebar.locator("[data-testid=stSelectbox]").first  # the model in use
            shown = " ".join(
                [box.text_content() or "", *[i.input_value() for i in box.locator("input").all()]]
            )
            assert "plant-vit (uploaded)" in shown, shown

            page.locator("[data-testid=stSidebarNav] a", has_text="Explore").click()
            page.get_by_role("heading", name="Explore").wait_for()
            settled(page, timeout_ms=180_000)
            main = page.locator("[data-testid=stMain]")
            heat = [
                c
                for c in main.locator("[data-testid=stCaptionContainer]").all_inner_texts()
                if " — " in c
            ]
            page.screenshot(path=str(SHOTS / "explore_byom_vit.png"))
            assert heat, "no heatmap captions on Explore"
            assert not page.locator("[data-testid=stException]").count()
            assert page.locator("[data-testid=stAlertContentError]").count() == 0
        finally:
            browser.close()
