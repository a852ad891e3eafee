"""Target-layer sets: ``"layer3+layer4"`` parsed once into a value.

A layer set names one or more modules of a model by dotted path (``"layer4"``, ``"layer3.1"``,
``"features[-1]"``; syntax of :func:`cam_core.models.resolve_layer`), joined by ``+``. The
engine computes a map at each layer, normalises each, averages them and renormalises.

>>> s = LayerSet.parse("layer3 + layer4")
>>> s.names, str(s)
(('layer3', 'layer4'), 'layer3+layer4')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from cam_core.models import resolve_layer

_SEGMENT = re.compile(r"\w+(?:\[-?\d+\])*|(?:\[-?\d+\])+")
"""One dot-separated part of a module path: a name and/or indices (``layer4``, ``features[-1]``)."""


def _is_path(name: object) -> bool:
    return isinstance(name, str) and all(_SEGMENT.fullmatch(s) for s in name.split("."))


@dataclass(frozen=True)
class LayerSet:
    """One or more module paths whose maps are fused; ``str()`` gives back ``"a+b"``."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("empty layer set: name at least one layer, e.g. 'layer4'")
        for name in self.names:
            if not _is_path(name):
                raise ValueError(
                    f"bad layer {name!r} in {'+'.join(map(str, self.names))!r}: expected a "
                    "dotted module path such as 'layer4', 'layer3.1' or 'features[-1]'"
                )
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"layer set {str(self)!r} names a layer twice")

    @classmethod
    def parse(cls, text: str | LayerSet) -> LayerSet:
        """``"layer3+layer4"`` → ``LayerSet(("layer3", "layer4"))``; spaces around parts are
        ignored; an empty part (``"layer3++layer4"``) is a ValueError naming the text.
        """
        if isinstance(text, LayerSet):
            return text
        if not text or not text.strip():
            raise ValueError("empty layer set: name at least one layer, e.g. 'layer4'")
        parts = [p.strip() for p in text.split("+")]
        if not all(parts):
            raise ValueError(f"empty part in layer set {text!r}: write e.g. 'layer3+layer4'")
        return cls(tuple(parts))

    def __str__(self) -> str:
        return "+".join(self.names)

    def resolve(self, model: nn.Module) -> tuple[nn.Module, ...]:
        """The modules, in order; KeyError naming the path when one does not exist in ``model``."""
        return tuple(resolve_layer(model, n) for n in self.names)
