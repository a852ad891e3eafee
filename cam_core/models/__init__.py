"""Models: architectures, checkpoints, the model card, input preprocessing.

- :mod:`~cam_core.models.registry`: :class:`ArchSpec` per architecture (CAM layers and head as
  strings), the registry, :func:`resolve_layer` for dotted layer paths;
- :mod:`~cam_core.models.networks`: the networks this project defines;
- :mod:`~cam_core.models.card`: :class:`ModelCard` and its typed :class:`Recommendation`;
- :mod:`~cam_core.models.checkpoints`: safe reading (``weights_only``), :func:`load_model`,
  :func:`save_model`;
- :mod:`~cam_core.models.preprocessing`: uint8 images → model input.

Import from here: ``from cam_core.models import load_model, ModelCard``.
"""

from cam_core.models import timm_models as _timm_models  # noqa: F401 - "timm/…" names
from cam_core.models.card import Calibration, Candidate, ModelCard, Recommendation, card_path_for
from cam_core.models.checkpoints import (
    CheckpointError,
    LoadedModel,
    guess_arch,
    load_model,
    read_state_dict,
    save_model,
)
from cam_core.models.networks import AdaptiveConcatPool2d, LocalEvidenceNet
from cam_core.models.preprocessing import preprocess
from cam_core.models.registry import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArchSpec,
    build_model,
    get_arch,
    register_arch,
    resolve_layer,
)

__all__ = [
    "ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AdaptiveConcatPool2d",
    "ArchSpec",
    "Calibration",
    "Candidate",
    "CheckpointError",
    "LoadedModel",
    "LocalEvidenceNet",
    "ModelCard",
    "Recommendation",
    "build_model",
    "card_path_for",
    "get_arch",
    "guess_arch",
    "load_model",
    "preprocess",
    "read_state_dict",
    "register_arch",
    "resolve_layer",
    "save_model",
]
