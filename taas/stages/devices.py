"""Reading the device labels stages report (``Stage.device``), for reports and summaries."""

from __future__ import annotations


def runs_on_gpu(device: str) -> bool:
    """Whether a stage's recorded device string names a GPU: a torch CUDA device (``cuda:0
    bf16 autocast``) or an OpenCL GPU (``OpenCL <platform> / <name> (GPU)``); not the CPU
    device a GPU backend fell back to (``cpu (CUDA unavailable)``, ``... (CPU)``)."""
    text = device.strip().lower()
    return text.startswith("cuda") or (text.startswith("opencl") and "(gpu" in text)
