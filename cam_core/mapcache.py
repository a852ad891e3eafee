"""Maps of one image for the app: a bounded cache kept per browser session, the image's class
scores, the classes explained by default, and the maps computed only when not cached.

Plain Python over cam_core types (no Streamlit): ``cache_in(st.session_state)`` keeps the cache
in a browser session.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cam_core.explain import CamError, CamResult, Explainer
from cam_core.metrics import map_figures
from cam_core.uploads import ImageItem

__all__ = [
    "MapCache",
    "MapKey",
    "cache_in",
    "class_scores",
    "compute_maps",
    "default_classes",
    "first_hit",
    "map_cache_capacity",
    "missing_methods",
]

MapKey = tuple[str, str, str, str, bool, int]
"""(model id, image key, method, layer, flip averaging, class index)."""


@dataclass
class MapCache:
    """Maps and class scores already computed, each bounded to ``capacity`` entries (oldest
    dropped), so a session that browses thousands of images holds at most ``capacity`` of each.

    Kept in the browser session so moving a slider never recomputes a map.
    """

    capacity: int = 400
    maps: dict[MapKey, CamResult] = field(default_factory=dict)
    probs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    seconds: dict[tuple[str, str, bool], float] = field(default_factory=dict)
    """Wall time in seconds of the last engine call per (model id, method, flip averaging): one
    image, its classes (what the app shows as the method's expected time)."""

    def estimate(self, model_id: str, method: str, flip_smooth: bool = False) -> float | None:
        """Seconds the last map of ``method`` took on one image with this model, None if never
        measured in this session.
        """
        return self.seconds.get((model_id, method, flip_smooth))

    def put(self, key: MapKey, result: CamResult) -> None:
        """Store one map as the newest entry."""
        self._put(self.maps, key, result)

    def put_probs(self, key: tuple[str, str], probs: np.ndarray) -> None:
        """Store one image's class scores as the newest entry."""
        self._put(self.probs, key, probs)

    def _put(self, store: dict, key: object, value: object) -> None:
        store.pop(key, None)
        store[key] = value
        while len(store) > self.capacity:
            store.pop(next(iter(store)))


def cache_in(store: MutableMapping[str, object], key: str = "map_cache") -> MapCache:
    """The :class:`MapCache` kept in ``store`` (e.g. ``st.session_state``), created on first use."""
    cache = store.get(key)
    if not isinstance(cache, MapCache):
        cache = MapCache(capacity=map_cache_capacity())
        store[key] = cache
    return cache


def map_cache_capacity(default: int = MapCache.capacity) -> int:
    """Maps kept per browser session: ``$CAM_CORE_MAP_CACHE`` when set to a positive integer."""
    raw = os.environ.get("CAM_CORE_MAP_CACHE", "")
    try:
        value = int(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def class_scores(
    explainer: Explainer, model_id: str, item: ImageItem, cache: MapCache
) -> np.ndarray:
    """(K,) class probabilities of ``item`` (cached)."""
    key = (model_id, item.key)
    if key not in cache.probs:
        cache.put_probs(key, explainer.predict([item.image])[0])
    return cache.probs[key]


def default_classes(
    explainer: Explainer, item: ImageItem, probs: np.ndarray, limit: int = 3
) -> list[str]:
    """Classes explained by default for ``item``: the model's prediction(s) from ``probs`` (K,)
    (:meth:`Explainer.default_targets`), then every class with GT boxes in the image, at most
    ``limit`` (a page's rows or columns); GT classes the model does not know are left out.
    """
    classes = explainer.card.classes
    chosen = [classes[i] for i in explainer.default_targets(probs[None])[0]]
    chosen += sorted({b.cls for b in item.boxes} & set(classes) - set(chosen))
    return chosen[:limit]


def map_key(
    model_id: str, item: ImageItem, method: str, layer: str, flip_smooth: bool, cls: int
) -> MapKey:
    """The cache key of one map (the one place it is spelt)."""
    return (model_id, item.key, method, layer, flip_smooth, cls)


def missing_methods(
    model_id: str,
    item: ImageItem,
    methods: Sequence[str],
    classes: Sequence[int],
    layer: str,
    cache: MapCache,
    *,
    flip_smooth: bool = False,
) -> list[str]:
    """The ``methods`` with at least one map of ``classes`` not cached (what
    :func:`compute_maps` would compute), in the order given.
    """
    return [
        m
        for m in methods
        if any(map_key(model_id, item, m, layer, flip_smooth, c) not in cache.maps for c in classes)
    ]


def compute_maps(
    explainer: Explainer,
    model_id: str,
    item: ImageItem,
    methods: Sequence[str],
    classes: Sequence[int],
    layer: str,
    cache: MapCache,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    flip_smooth: bool = False,
) -> tuple[dict[tuple[str, int], CamResult], dict[str, str]]:
    """Maps of ``item`` for every (method, class index), computing only those not cached;
    ``flip_smooth`` as in :meth:`Explainer.explain` (cached apart from the plain maps).

    Returns (maps, errors): a method that fails (e.g. CAM on a head it does not apply to) is left
    out of ``maps`` and ``errors[method]`` says why; the others still run. Each method is one
    engine call so ``progress(done, total, method)`` moves per method.
    """

    def key(method: str, c: int) -> MapKey:
        return map_key(model_id, item, method, layer, flip_smooth, c)

    missing = missing_methods(
        model_id, item, methods, classes, layer, cache, flip_smooth=flip_smooth
    )
    errors: dict[str, str] = {}
    for done, method in enumerate(missing):
        if progress is not None:
            progress(done, len(missing), method)
        start = time.perf_counter()
        try:
            result = explainer.explain(
                [item.image],
                [method],
                targets=[list(classes)],
                layers=layer,
                flip_smooth=flip_smooth,
            )
        except (CamError, KeyError, ValueError, RuntimeError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            errors[method] = f"{method}: {text}"
            continue
        cache.seconds[(model_id, method, flip_smooth)] = time.perf_counter() - start
        for r in result.results:
            cache.put(key(method, r.class_index), r)
    if progress is not None and missing:
        progress(len(missing), len(missing), "done")
    maps = {
        (m, c): cache.maps[key(m, c)]
        for m in methods
        if m not in errors
        for c in classes
        if key(m, c) in cache.maps
    }
    return maps, errors


def first_hit(
    explainer: Explainer,
    model_id: str,
    items: Iterable[ImageItem],
    method: str,
    layer: str,
    cache: MapCache,
    *,
    flip_smooth: bool = False,
    threshold: float | str = 0.5,
    limit: int = 6,
) -> ImageItem | None:
    """A representative image to open on: the first of ``items`` (at most ``limit`` with GT
    boxes of their predicted class are tried) whose ``method`` map of the predicted class points
    inside those boxes. The maps computed are cached, so the page draws them at once. None when
    no tried image hits.
    """
    tried = 0
    for item in items:
        probs = class_scores(explainer, model_id, item, cache)
        predicted = int(np.argmax(probs))
        gt = item.sample.boxes_for(explainer.card.classes[predicted])
        if not gt:
            continue
        maps, _ = compute_maps(
            explainer, model_id, item, [method], [predicted], layer, cache, flip_smooth=flip_smooth
        )
        result = maps.get((method, predicted))
        if result is not None and map_figures(result.cam, gt, threshold=threshold).scores.get(
            "pointing"
        ):
            return item
        tried += 1
        if tried >= limit:
            return None
    return None
