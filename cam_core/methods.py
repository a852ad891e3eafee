"""Method registry: a CAM method's name → how the engine computes it.

Every method is one :class:`MethodSpec`; its ``compute`` (a function of
:mod:`cam_core.cams`, given the per-batch context and the spec) makes the maps. Kinds:

- ``gradient``: a formula on the target layer's activations ``A`` and the gradients ``G`` of one
  class logit w.r.t. ``A`` (both ``(T, C, h, w)`` tensors, one row per (image, class) target).
  The engine gets every target's ``G`` from one forward and one batched backward that stops at
  the target layer; a method is the one-line formula below. Formulas mirror pytorch-grad-cam
  1.5.7 exactly (the equality tests hold them to 1e-4).
- ``activation``: a formula on ``A`` alone (EigenCAM): no backward at all, not class-specific.
- ``analytic`` (CAM: head weights), ``perturbation`` (Score-CAM, Ablation-CAM): their own
  function in :mod:`cam_core.cams`.
- ``library``: an outside library's code inside the engine's guards: pytorch-grad-cam's own
  class (FullGrad, ShapleyCAM, …), or the ``lime`` package. No shared capture, no ``aug_smooth``.

The first two kinds compute with :func:`cam_core.cams.gradient.formula_map` and ``library``
with :func:`cam_core.cams.reference.library` unless a spec names its own ``compute``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cam_core.cams import gradient, perturbation, reference
from cam_core.cams.capture import MapOut
from cam_core.cams.context import Batch, Formula
from cam_core.cams.gradient import gradcam_plusplus_weights

Compute = Callable[[Batch, "MethodSpec"], MapOut]
"""(per-batch context, the method's spec) → (T, S, S) maps in [0, 1] and (T,) strengths | None."""

KIND_COMPUTE: dict[str, Compute] = {
    "gradient": gradient.formula_map,
    "activation": gradient.formula_map,
    "library": reference.library,
}
"""How each kind is computed when its spec names no ``compute`` of its own."""

KINDS: tuple[str, ...] = ("gradient", "activation", "analytic", "perturbation", "library")


@dataclass(frozen=True)
class MethodSpec:
    """What the engine needs to know about one method.

    ``kind`` is one of :data:`KINDS`; ``formula`` is set for "gradient" and "activation";
    ``compute`` is the function making the maps (None: the kind's in :data:`KIND_COMPUTE`);
    ``library_class`` names the pytorch-grad-cam class used as the reference (and as the
    implementation for kind "library"). ``class_specific`` is False for maps that ignore the
    target class. ``slow`` marks methods that run many forward passes per image.
    """

    name: str
    label: str
    kind: str
    class_specific: bool = True
    formula: Formula | None = None
    project: bool = False
    library_class: str | None = None
    slow: bool = False
    description: str = ""
    compute: Compute | None = None

    def run(self, ctx: Batch) -> MapOut:
        """The maps of this method for the batch ``ctx``."""
        return (self.compute or KIND_COMPUTE[self.kind])(ctx, self)

    @property
    def uses_capture(self) -> bool:
        """Reads the batch's shared capture (every kind but "library")."""
        return self.kind != "library"

    @property
    def augmentable(self) -> bool:
        """``aug_smooth`` applies (library methods ignore it, as before)."""
        return self.kind != "library"


def _channel_weighted(weights: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """w_c · A_c for (T, C) weights."""
    return weights[:, :, None, None] * a


def _gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return _channel_weighted(g.mean(dim=(2, 3)), a)


def _elementwise(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return g * a


def _elementwise_relu(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.relu(g * a)


def _gradcam_plusplus(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return _channel_weighted(gradcam_plusplus_weights(a, g, g * g, g * g * g), a)


def _xgradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return _channel_weighted((g * a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)).sum(dim=(2, 3)), a)


def _layercam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.relu(g) * a


def _activations(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return a


def _fem(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # each channel weighted by the share of its locations above its mean + 2 standard deviations
    th = a.mean(dim=(2, 3), keepdim=True) + 2 * a.std(dim=(2, 3), correction=0, keepdim=True)
    return (a > th).float().mean(dim=(2, 3), keepdim=True) * a


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method; a name can be registered once; a kind must be known and computable."""
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered")
    if spec.kind not in KINDS:
        raise ValueError(f"method {spec.name!r}: unknown kind {spec.kind!r}; valid: {list(KINDS)}")
    if spec.kind in ("gradient", "activation") and spec.formula is None:
        raise ValueError(f"method {spec.name!r} of kind {spec.kind!r} needs a formula")
    if spec.compute is None and spec.kind not in KIND_COMPUTE:
        raise ValueError(f"method {spec.name!r} of kind {spec.kind!r} needs a compute function")
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The registered method called ``name``; unknown names list the valid ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"Unknown CAM method {name!r}; valid: {sorted(METHODS)}") from None


for _spec in (
    MethodSpec(
        "gradcam",
        "Grad-CAM",
        "gradient",
        formula=_gradcam,
        library_class="GradCAM",
        description="Channel weights = spatial mean of the gradients (Selvaraju et al. 2017).",
    ),
    MethodSpec(
        "gradcam++",
        "Grad-CAM++",
        "gradient",
        formula=_gradcam_plusplus,
        library_class="GradCAMPlusPlus",
        description="Weights from positive gradients with higher-order terms (Chattopadhay 2018).",
    ),
    MethodSpec(
        "hirescam",
        "HiResCAM",
        "gradient",
        formula=_elementwise,
        library_class="HiResCAM",
        description="Element-wise gradient × activation, summed over channels (Draelos 2020).",
    ),
    MethodSpec(
        "gradcam-elementwise",
        "Grad-CAM element-wise",
        "gradient",
        formula=_elementwise_relu,
        library_class="GradCAMElementWise",
        description="ReLU of gradient × activation before the channel sum.",
    ),
    MethodSpec(
        "xgradcam",
        "XGrad-CAM",
        "gradient",
        formula=_xgradcam,
        library_class="XGradCAM",
        description="Axiom-based activation-normalised gradient weights (Fu et al. 2020).",
    ),
    MethodSpec(
        "layercam",
        "LayerCAM",
        "gradient",
        formula=_layercam,
        library_class="LayerCAM",
        description="Positive gradients weight every location (Jiang et al. 2021).",
    ),
    MethodSpec(
        "eigengradcam",
        "EigenGrad-CAM",
        "gradient",
        formula=_elementwise,
        project=True,
        library_class="EigenGradCAM",
        description="First principal component of gradient × activation.",
    ),
    MethodSpec(
        "eigencam",
        "EigenCAM",
        "activation",
        class_specific=False,
        formula=_activations,
        project=True,
        library_class="EigenCAM",
        description="First principal component of the activations: class-agnostic.",
    ),
    MethodSpec(
        "fem",
        "FEM",
        "activation",
        class_specific=False,
        formula=_fem,
        library_class="FEM",
        description="Channels weighted by their share of 2-sigma outliers (Fuad et al. 2020): "
        "class-agnostic.",
    ),
    MethodSpec(
        "cam",
        "CAM",
        "analytic",
        compute=gradient.cam,
        description="Original CAM (Zhou et al. 2016): head weights × last-layer activations; "
        "for a GAP + linear head it equals Grad-CAM at the last layer up to scale.",
    ),
    MethodSpec(
        "smooth-gradcam++",
        "Smooth Grad-CAM++",
        "gradient",
        formula=_gradcam_plusplus,
        compute=gradient.smooth_gradcampp,
        description="Grad-CAM++ with gradient moments averaged over noisy copies "
        "(Omeiza et al. 2019).",
    ),
    MethodSpec(
        "scorecam",
        "Score-CAM",
        "perturbation",
        compute=perturbation.scorecam,
        library_class="ScoreCAM",
        slow=True,
        description="Each channel masks the input; weights = softmax of the masked scores "
        "(Wang et al. 2020). Batched on device here.",
    ),
    MethodSpec(
        "ablationcam",
        "Ablation-CAM",
        "perturbation",
        compute=perturbation.ablationcam,
        library_class="AblationCAM",
        slow=True,
        description="Weight = relative score drop when a channel is zeroed "
        "(Desai & Ramaswamy 2020). Batched from the cached layer output here.",
    ),
    MethodSpec(
        "fullgrad",
        "FullGrad",
        "library",
        library_class="FullGrad",
        slow=True,
        description="Input gradients plus bias gradients of every layer (Srinivas 2019); "
        "ignores the target layer.",
    ),
    MethodSpec(
        "shapleycam",
        "ShapleyCAM",
        "library",
        library_class="ShapleyCAM",
        description="Gradient and Hessian-vector product weights (Cai 2025).",
    ),
    MethodSpec(
        "finercam",
        "FinerCAM",
        "library",
        library_class="FinerCAM",
        description="Grad-CAM of the target logit minus its most similar classes' logits.",
    ),
    MethodSpec(
        "kpcacam",
        "KPCA-CAM",
        "library",
        library_class="KPCA_CAM",
        class_specific=False,
        slow=True,
        description="Kernel-PCA projection of the activations: class-agnostic.",
    ),
    MethodSpec(
        "lime",
        "LIME",
        "library",
        compute=perturbation.lime,
        slow=True,
        description="Model-agnostic: superpixels switched off at random, local linear fit "
        "(Ribeiro et al. 2016; the `lime` package).",
    ),
):
    register_method(_spec)

GRADIENT_METHODS: tuple[str, ...] = tuple(n for n, s in METHODS.items() if s.kind == "gradient")
