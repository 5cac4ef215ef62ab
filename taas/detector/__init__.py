"""Detector geometry: the module table and vectorised transforms."""

from taas.detector.detector import Detector
from taas.detector.modules import Modules

__all__ = ["Detector", "Modules"]
