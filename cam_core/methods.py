"""Method registry: a CAM method's name → how the engine computes it.

Three kinds of method, one registry:

- ``gradient``: a formula on the target layer's activations ``A`` and the gradients ``G`` of one
  class logit w.r.t. ``A`` (both ``(T, C, h, w)`` tensors, one row per (image, class) target).
  The engine gets every target's ``G`` from one forward and one batched backward that stops at
  the target layer; a method is the few lines below. Formulas mirror pytorch-grad-cam 1.5.7
  exactly (the equality tests hold them to 1e-4).
- ``activation``: a formula on ``A`` alone (EigenCAM): no backward at all, not class-specific.
- ``library``: computed by pytorch-grad-cam's own class (FullGrad, ShapleyCAM, …) inside the
  engine's guards, or by the engine's batched perturbation loops (ScoreCAM, AblationCAM) and LIME.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Formula = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(A, G) → weighted activations (T, C, h, w); the engine sums them over channels (or projects
them on their first principal component for ``eigen_smooth`` and the Eigen methods)."""


@dataclass(frozen=True)
class MethodSpec:
    """What the engine needs to know about one method.

    ``kind`` is "gradient", "activation", "analytic" (CAM: head weights, no backward),
    "perturbation" or "library"; ``formula`` is set for the
    first two; ``library_class`` names the pytorch-grad-cam class used as the reference (and as
    the implementation for kind "library"). ``class_specific`` is False for maps that ignore the
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


def _spatial_sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=(2, 3), keepdim=True)


def _channel_weighted(weights: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """w_c · A_c for (T, C) weights."""
    return weights[:, :, None, None] * a


def gradcam_plusplus_weights(
    a: torch.Tensor, g: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM++ channel weights (Chattopadhay et al. 2018) from the gradient moments; (T, C)."""
    aij = g2 / (2 * g2 + _spatial_sum(a) * g3 + 1e-6)
    aij = torch.where(g != 0, aij, torch.zeros_like(aij))
    return (torch.relu(g) * aij).sum(dim=(2, 3))


def projection_2d(x: torch.Tensor) -> torch.Tensor:
    """First principal component of each (C, h, w) item → (T, h, w).

    Delegates to pytorch-grad-cam's ``get_2d_projection`` (numpy SVD on the host): a component's
    sign is arbitrary, and only the library's own SVD call reproduces the library's choice (a
    batched torch SVD flips some items). The (h·w, C) matrices are small; this is the one
    host round trip the Eigen methods make.
    """
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    proj = get_2d_projection(x.detach().float().cpu().numpy())
    return torch.from_numpy(proj).to(x.device)


def _gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return _channel_weighted(g.mean(dim=(2, 3)), a)


def _elementwise(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return g * a


def _elementwise_relu(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.relu(g * a)


def _gradcam_plusplus(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    g2 = g * g
    return _channel_weighted(gradcam_plusplus_weights(a, g, g2, g2 * g), a)


def _xgradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return _channel_weighted((g * a / (_spatial_sum(a) + 1e-7)).sum(dim=(2, 3)), a)


def _layercam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.relu(g) * a


def _activations(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return a


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method; a name can be registered once."""
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered")
    if spec.kind in ("gradient", "activation") and spec.formula is None:
        raise ValueError(f"method {spec.name!r} of kind {spec.kind!r} needs a formula")
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
        "cam",
        "CAM",
        "analytic",
        library_class=None,
        description="Original CAM (Zhou et al. 2016): head weights × last-layer activations; "
        "for a GAP + linear head it equals Grad-CAM at the last layer up to scale.",
    ),
    MethodSpec(
        "smooth-gradcam++",
        "Smooth Grad-CAM++",
        "gradient",
        formula=_gradcam_plusplus,
        library_class=None,
        description="Grad-CAM++ with gradient moments averaged over noisy copies "
        "(Omeiza et al. 2019).",
    ),
    MethodSpec(
        "scorecam",
        "Score-CAM",
        "perturbation",
        library_class="ScoreCAM",
        slow=True,
        description="Each channel masks the input; weights = softmax of the masked scores "
        "(Wang et al. 2020). Batched on device here.",
    ),
    MethodSpec(
        "ablationcam",
        "Ablation-CAM",
        "perturbation",
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
        library_class=None,
        slow=True,
        description="Model-agnostic: superpixels switched off at random, local linear fit "
        "(Ribeiro et al. 2016; the `lime` package).",
    ),
):
    register_method(_spec)

GRADIENT_METHODS: tuple[str, ...] = tuple(n for n, s in METHODS.items() if s.kind == "gradient")
