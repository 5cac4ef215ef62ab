"""The magnetic field a detector's data were simulated in: uniform, or a finite solenoid.

Part of the detector's conditions, like its material: readers attach the field their data were
made in (``Detector.field``), and the track math (``taas.tracking.field``) propagates in it.
The real TrackML sample's field is an ATLAS-like solenoid (``TRACKML_SOLENOID``); taas' own
simulation uses a uniform 2 T field.

Off the axis the solenoid's field follows from its on-axis profile to first order in r
(``Br = -(r / 2) dBz/dz``, from div B = 0); the change of Bz with r is second order and left
out. ``effective_bz`` is the field that turns a track moving outwards from the beam line in
the transverse plane, ``Bz - cot(theta) Br`` (the azimuthal force ``q (v_z Br - v_r Bz)``):
where the field lines open up near the coil's ends, a forward track's transverse turn is cut
by the radial field as well as by the smaller Bz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np


class Field(Protocol):
    """What the track math asks of a field."""

    def effective_bz(self, xyz: Any, cot_theta: Any, xp: ModuleType = np) -> float | Any:
        """The field (T) that turns tracks at ``xyz`` (n, 3) with ``cot_theta`` (n,) in the
        transverse plane: a float for a uniform field, else (n,). ``xp``: the arrays'
        namespace (numpy, or torch for tensors on a device)."""
        ...

    @property
    def max_bz(self) -> float:
        """The largest |effective field| anywhere (T): bounds of how far a helix may curve."""
        ...


@dataclass(frozen=True)
class UniformField:
    """``bz`` tesla along z everywhere."""

    bz: float = 2.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.bz) or self.bz == 0:
            raise ValueError(f"UniformField.bz must be finite and non-zero (T), got {self.bz}")

    def effective_bz(self, xyz: Any, cot_theta: Any, xp: ModuleType = np) -> float:
        return self.bz

    @property
    def max_bz(self) -> float:
        return abs(self.bz)


@dataclass(frozen=True)
class SolenoidField:
    """A solenoid's field: on the axis ``Bz(z) = bz_center f(z) / f(0)`` with
    ``f(z) = (z + L) / sqrt((z + L)^2 + a^2) - (z - L) / sqrt((z - L)^2 + a^2)`` (the field of
    a uniformly wound coil of half length ``L`` and radius ``a``), off the axis to first order
    in r (module docstring). ``half_length`` and ``fall_off`` (``a``) in mm.
    """

    bz_center: float
    half_length: float
    fall_off: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.bz_center) or self.bz_center == 0:
            raise ValueError(f"SolenoidField.bz_center must be finite and non-zero (T), "
                             f"got {self.bz_center}")
        for name in ("half_length", "fall_off"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SolenoidField.{name} must be > 0 (mm), "
                                 f"got {getattr(self, name)}")

    def _profile(self, z: Any, xp: ModuleType = np) -> tuple[Any, Any]:
        """f(z) and f'(z)."""
        a2 = self.fall_off ** 2
        up, down = z + self.half_length, z - self.half_length
        rho_up, rho_down = xp.sqrt(up ** 2 + a2), xp.sqrt(down ** 2 + a2)
        value = up / rho_up - down / rho_down
        slope = a2 / rho_up ** 3 - a2 / rho_down ** 3
        return value, slope

    @property
    def _norm(self) -> float:
        return float(self.bz_center / self._profile(np.zeros(1))[0][0])

    def bz_br(self, xyz: Any, xp: ModuleType = np) -> tuple[Any, Any]:
        """(Bz, Br) in tesla at the points ``xyz`` (n, 3) (arrays of ``xp``)."""
        if xp is np:
            xyz = np.asarray(xyz, float)
        value, slope = self._profile(xyz[:, 2], xp)
        r = xp.hypot(xyz[:, 0], xyz[:, 1])
        return self._norm * value, -0.5 * r * self._norm * slope

    def effective_bz(self, xyz: Any, cot_theta: Any, xp: ModuleType = np) -> Any:
        bz, br = self.bz_br(xyz, xp)
        if xp is np:
            cot_theta = np.asarray(cot_theta, float)
        return bz - cot_theta * br

    @property
    def max_bz(self) -> float:
        # Bz peaks at the centre; the radial term lowers the field a track turns in
        # wherever it is large (module docstring), so the centre bounds it
        return abs(self.bz_center)



#: The real TrackML sample's field (``../shared/data/trackml``): the solenoid whose effective
#: field best matches the turning of the sample's truth momenta between consecutive hits
#: (``taas.metrics.field_probe.fit_solenoid`` on its 541 hit pairs of particles above
#: 0.8 GeV; ``benchmarks/trackml_real_data.py``): 2.00 T at the centre, half length 2.63 m,
#: radius 1.15 m, close to the ATLAS solenoid's 5.3 m length and 1.23 m radius. Median
#: residual per |z| bin within 0.04 T up to |z| = 3 m.
TRACKML_SOLENOID = SolenoidField(bz_center=2.0, half_length=2625.0, fall_off=1149.0)

#: The fields a simulation can be run in (``taas simulate --field``), by the name its manifest
#: records: taas' uniform 2 T, or the real TrackML sample's solenoid (so that models trained
#: on simulation see the forward tracks' straightening the real data has).
SIMULATION_FIELDS: dict[str, UniformField | SolenoidField] = {
    "uniform": UniformField(2.0), "trackml": TRACKML_SOLENOID}


def simulation_field(name: str) -> UniformField | SolenoidField:
    """The field ``name`` of ``SIMULATION_FIELDS``; ``ValueError`` naming the valid ones."""
    if name not in SIMULATION_FIELDS:
        raise ValueError(f"field: unknown simulation field {name!r}; valid: "
                         f"{sorted(SIMULATION_FIELDS)}")
    return SIMULATION_FIELDS[name]

