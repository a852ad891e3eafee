"""Shared test setup."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cam_core.models import ModelCard


@pytest.fixture(autouse=True)
def _navigation_only_multipage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AppTest treat the app as the ``st.navigation`` app it is: AppTest resets Streamlit's
    legacy ``pages/`` switch before every run (the workaround and why: pages/_legacy.py)."""
    from pages._legacy import apptest_uses_navigation_only

    apptest_uses_navigation_only(monkeypatch)


# ---------------------------------------------------------------------------- cards and models
# Shared model fixtures: a small valid card (any field overridable) and a small saved checkpoint
# with its card, so a test needing "a model" does not build its own.

NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


@pytest.fixture
def make_card() -> Callable[..., ModelCard]:
    """A factory of valid :class:`ModelCard`\\ s: resnet18, the six NEU classes, 64 px, gray
    statistics; keyword arguments replace any field (``recommended`` may be a plain dict).
    """
    from cam_core.models import ModelCard

    def make(**fields: Any) -> ModelCard:
        base: dict[str, Any] = {
            "name": "test-card",
            "arch": "resnet18",
            "classes": NEU_CLASSES,
            "multilabel": False,
            "input_size": 64,
            "mean": (0.5, 0.5, 0.5),
            "std": (0.25, 0.25, 0.25),
        }
        return ModelCard(**{**base, **fields})

    return make


@pytest.fixture
def tiny_card(make_card: Callable[..., ModelCard]) -> ModelCard:
    """A valid card with no recommendation: resnet18, six NEU classes, 64 px."""
    return make_card()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.pt`` + ``model.json``: a seeded, untrained ``local_resnet18`` for the six NEU
    classes at 64 px, saved by ``save_model``. Shared by the session: copy it before changing it.
    """
    import torch

    from cam_core.models import ModelCard, build_model, save_model

    torch.manual_seed(0)
    card = ModelCard(
        name="tiny-local",
        arch="local_resnet18",
        classes=NEU_CLASSES,
        multilabel=False,
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    model = build_model("local_resnet18", len(NEU_CLASSES))
    return save_model(model, card, tmp_path_factory.mktemp("tiny-model") / "model.pt")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny convolutions on a busy 2-core machine: one thread is ~50x faster than two
    (a module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 synthetic 64 x 64 images per NEU class (split: 2 train + 1 val per class), one folder
    per test module."""
    from cam_core.synth import write_voc_folder

    return write_voc_folder(tmp_path_factory.mktemp("voc"), 3, seed=0, size=64)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test module's own copy of :func:`tiny_checkpoint` (its tests may rewrite the card)."""
    import shutil

    out = tmp_path_factory.mktemp("model") / "model.pt"
    shutil.copyfile(tiny_checkpoint, out)
    shutil.copyfile(tiny_checkpoint.with_suffix(".json"), out.with_suffix(".json"))
    return out
