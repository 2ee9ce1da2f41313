"""Soft labels inside pipelines people already run.

- :mod:`softseg.integrations.torchvision`: :class:`~softseg.integrations.torchvision.SoftLabel`, a
  ``tv_tensors`` type that torchvision's ``transforms.v2`` resize, crop, pad and flip beside the
  image, and that comes out as a soft label ``(C, h, w)``.

OpenCV needs no adapter: ``convention="cv2"`` in :func:`softseg.soft_downsample` and friends
reproduces ``cv2.resize`` (see ``docs/integrations.md``). Submodules are imported on demand, so
importing this package registers nothing.
"""
