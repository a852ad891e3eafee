"""CAM method implementations, one file per family; :mod:`cam_core.methods` maps names to them.

- ``capture``: the model's lifecycle (lock, modes restored per module), the one forward that
  keeps the target layers' outputs, the batched backward, map finishing (normalise, resize, fuse).
- ``context``: :class:`~cam_core.cams.context.Batch`, the per-batch context that is all a method
  sees, and test-time averaging (flips, ``aug_smooth``) as transforms applied, undone, averaged.
- ``gradient``: formula methods (Grad-CAM and kin) on the shared capture, Smooth Grad-CAM++, CAM.
- ``perturbation``: Score-CAM, Ablation-CAM, LIME.
- ``reference``: pytorch-grad-cam called correctly (the tests' reference, and kind "library").

A method is ``compute(ctx: Batch, spec) -> (maps (T, S, S) in [0, 1], strengths (T,) | None)``.
"""
