"""cam_core.mapcache: the per-session map cache, class scores, default classes, compute_maps."""

from pathlib import Path

import numpy as np
import pytest

from cam_core import mapcache
from cam_core.data import Box, Sample
from cam_core.uploads import ImageItem


class _FakeExplainer:
    def __init__(self):
        self.calls = []

    def explain(self, images, methods, *, targets, layers, flip_smooth=False):
        from cam_core.explain import CamError, CamResult, Explanation

        self.calls.append((tuple(methods), tuple(targets[0]), flip_smooth))
        if methods[0] == "cam":
            raise CamError("CAM needs a GAP + linear head")
        results = tuple(
            CamResult(0, c, f"c{c}", methods[0], layers, np.zeros((4, 4), np.float32), 1.0)
            for c in targets[0]
        )
        return Explanation(("c0", "c1"), np.zeros((1, 2)), results)


def test_compute_maps_caches_and_reports_failures_per_method():
    item = ImageItem("k", "x.png", np.zeros((4, 4), np.uint8), Sample(Path("x"), "x"), "upload")
    cache = mapcache.MapCache()
    fake = _FakeExplainer()
    maps, errors = mapcache.compute_maps(fake, "m", item, ["gradcam", "cam"], [0, 1], "l", cache)
    assert set(maps) == {("gradcam", 0), ("gradcam", 1)}
    assert errors == {"cam": "cam: CAM needs a GAP + linear head"}
    fake.calls.clear()
    maps, _ = mapcache.compute_maps(fake, "m", item, ["gradcam"], [1], "l", cache)
    assert fake.calls == [] and maps[("gradcam", 1)].class_index == 1
    # flip-averaged maps are other maps: computed (once), not served from the plain ones
    for _ in range(2):
        mapcache.compute_maps(fake, "m", item, ["gradcam"], [1], "l", cache, flip_smooth=True)
    assert fake.calls == [(("gradcam",), (1,), True)]


def test_map_cache_drops_the_oldest():
    cache = mapcache.MapCache(capacity=2)
    for i in range(3):
        cache.put(("m", "k", "gradcam", "l", False, i), object())  # type: ignore[arg-type]
    assert [k[-1] for k in cache.maps] == [1, 2]
    store: dict = {}
    assert mapcache.cache_in(store) is mapcache.cache_in(store)


def test_map_cache_capacity_from_the_environment(monkeypatch):
    for raw, expected in (("12", 12), ("0", 400), ("-3", 400), ("lots", 400), ("", 400)):
        monkeypatch.setenv("CAM_CORE_MAP_CACHE", raw)
        assert mapcache.cache_in({}).capacity == expected


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status: RSS cannot be read on this platform")


@pytest.mark.slow
def test_soak_many_images_keep_caches_bounded_and_memory_flat():
    """A session that browses 200 different images: caches stay at their bound, no hook is
    left on the shared model, and the process's memory levels off after warm-up."""
    import gc

    from cam_core.explain import Explainer
    from cam_core.models import load_model

    root = Path(__file__).resolve().parents[1] / "models" / "demo-synthetic" / "model.pt"
    loaded = load_model(root)
    ex = Explainer(loaded.model, loaded.card)
    cache = mapcache.MapCache(capacity=40)
    rng = np.random.default_rng(0)
    rss = []
    for i in range(200):
        image = rng.integers(0, 256, (128, 128), dtype=np.uint8)
        item = ImageItem(f"k{i}", f"{i}.png", image, Sample(Path(f"{i}.png"), None), "upload")
        mapcache.class_scores(ex, "demo", item, cache)
        maps, errors = mapcache.compute_maps(
            ex, "demo", item, ["gradcam", "gradcam++"], [i % 6, (i + 1) % 6], "layer2", cache
        )
        assert not errors and len(maps) == 4
        if i in (49, 199):
            gc.collect()
            rss.append(_rss_mib())
    assert len(cache.maps) == 40 and len(cache.probs) == 40
    assert all(not m._forward_hooks and not m._backward_hooks for m in loaded.model.modules())
    assert rss[1] - rss[0] < 30, f"RSS grew {rss[1] - rss[0]:.1f} MiB over 150 images: {rss}"


def test_default_classes_are_the_prediction_then_the_gt_classes():
    class _Card:
        classes = ("crazing", "inclusion", "patches", "scratches")

    class _Ex:
        card = _Card()

        def default_targets(self, probs):
            return [[int(probs[0].argmax())]]

    boxes = (Box("inclusion", 0, 0, 2, 2), Box("inclusion", 1, 1, 3, 3), Box("rust", 0, 0, 1, 1))
    item = ImageItem(
        "k", "s.png", np.zeros((4, 4), np.uint8), Sample(Path("s.png"), "s", None, boxes), "upload"
    )
    probs = np.array([0.1, 0.1, 0.1, 0.7])
    # the predicted class, then the image's GT classes the model knows ("rust" it does not)
    assert mapcache.default_classes(_Ex(), item, probs) == ["scratches", "inclusion"]
    assert mapcache.default_classes(_Ex(), item, np.array([0.1, 0.8, 0.1, 0.0])) == ["inclusion"]
    assert mapcache.default_classes(_Ex(), item, probs, limit=1) == ["scratches"]


def test_missing_methods_and_timings_follow_the_cache():
    """Issue 14 item 8: the page draws cached maps first and computes only the missing methods;
    each engine call's wall time is kept as the method's expected time."""
    item = ImageItem("k", "x.png", np.zeros((4, 4), np.uint8), Sample(Path("x"), "x"), "upload")
    cache = mapcache.MapCache()
    fake = _FakeExplainer()
    assert mapcache.missing_methods("m", item, ["gradcam", "hirescam"], [0], "l", cache) == [
        "gradcam",
        "hirescam",
    ]
    assert cache.estimate("m", "gradcam") is None
    mapcache.compute_maps(fake, "m", item, ["gradcam"], [0, 1], "l", cache)
    assert mapcache.missing_methods("m", item, ["gradcam", "hirescam"], [0], "l", cache) == [
        "hirescam"
    ]
    assert mapcache.missing_methods("m", item, ["gradcam"], [0], "l", cache, flip_smooth=True) == [
        "gradcam"
    ]
    assert cache.estimate("m", "gradcam") >= 0 and cache.estimate("m", "gradcam", True) is None


def test_first_hit_opens_on_the_first_image_whose_map_hits():
    """Issue 14 item 14: the demo model's recommended map misses scratches_synth_0001 and hits
    scratches_synth_0000, so a gallery listing them in that order opens on the second."""
    from cam_core import synth
    from cam_core.explain import Explainer
    from cam_core.models import load_model
    from cam_core.uploads import item_from_sample

    demo = Path(__file__).resolve().parents[1] / "models" / "demo-synthetic" / "model.pt"
    if not demo.is_file():
        pytest.skip(f"bundled demo model missing ({demo})")
    loaded = load_model(demo)
    explainer = Explainer(loaded.model, loaded.card)
    by_stem = {s.stem: s for s in synth.synthetic_samples(3, 7)}
    stems = ["scratches_synth_0001", "scratches_synth_0000"]
    items = [item_from_sample(by_stem[s]) for s in stems]
    cache = mapcache.MapCache()
    hit = mapcache.first_hit(explainer, "demo", items, "gradcam++", "layer2", cache, threshold=0.3)
    assert hit is not None and hit.sample.stem == "scratches_synth_0000"
    assert len(cache.maps) == 2  # both tried maps cached for the page to draw
    assert mapcache.first_hit(explainer, "demo", items[:1], "gradcam++", "layer2", cache) is None
