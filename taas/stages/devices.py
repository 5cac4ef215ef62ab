"""Reading the device labels stages report (``Stage.device``), for reports and summaries."""

from __future__ import annotations


def runs_on_gpu(device: str) -> bool:
    """Whether a stage's recorded device string names a GPU (``cuda:0``, an OpenCL GPU ...)."""
    text = device.lower()
    return "cuda" in text or "gpu" in text
