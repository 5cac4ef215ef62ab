"""Named event sizes for simulation, so figures quote one word instead of five numbers.

Sizes follow ACTS' own benchmark setup (20 particles per vertex, pT 0.5-10 GeV, |eta| < 2.5),
so taas timings line up with ACTS' reference chain measured on the same presets.
"""

from __future__ import annotations

from dataclasses import dataclass

from taas.errors import InputError

#: Particle species the gun fires by default: muons and charged pions (charge randomised).
DEFAULT_PDG: tuple[int, ...] = (13, 211)


@dataclass(frozen=True)
class SimulationPreset:
    """Particle-gun event size and kinematic range (GeV, pseudorapidity)."""

    name: str
    vertices: int
    particles_per_vertex: int
    pt_min: float = 0.5
    pt_max: float = 10.0
    eta_max: float = 2.5
    pdg: tuple[int, ...] = DEFAULT_PDG
    doc: str = ""

    @property
    def particles(self) -> int:
        """Generated particles per event."""
        return self.vertices * self.particles_per_vertex


PRESETS: dict[str, SimulationPreset] = {
    p.name: p
    for p in (
        SimulationPreset("tiny", 5, 10, doc="50 particles: unit tests, seconds per event"),
        SimulationPreset("small", 25, 20, doc="500 particles (~20k cells)"),
        SimulationPreset("medium", 200, 20, doc="4000 particles (~160k cells)"),
        SimulationPreset("large", 800, 20, doc="16000 particles (~650k cells), HL-LHC-like"),
    )
}


def get_preset(name: str) -> SimulationPreset:
    """The preset called ``name``; an unknown name lists the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown simulation preset {name!r}; valid: {sorted(PRESETS)}") from None
