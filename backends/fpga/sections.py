"""Split an event's graph into overlapping (eta, phi) sections of a fixed size, and merge back.

The FPGA interaction GNN works on graph sections of at most ``section_nodes`` nodes and
``section_edges`` edges (the array sizes of its kernels; published FPGA GNN tracking designs use
sectors of a few hundred to a few thousand nodes, e.g. Elabd et al. 2022). An event is cut into
``eta_sectors`` x ``phi_sectors`` sector *cores*; each node lies in exactly one core, and each
edge is *owned* by the core of its source node, so every edge is scored exactly once. The
section of a core holds every node within ``eta_overlap`` / ``phi_overlap`` of the core (phi
wrapping at +-pi), plus the far ends of the core's own edges, and every edge between its nodes:
message passing near the border then sees (nearly) the neighbourhood it sees in the whole event.
Only the owned edges' scores are kept.

Sectors are cut in phi first: a track's hits keep their phi to within its bending (< 0.3 rad
over the tracker at pT > 1 GeV), but not their eta, which is computed from the origin while the
vertex spreads along z (on a ``small`` event, cutting at eta = 0 with an eta overlap of 0.4
lost 0.17% of the true pT > 1 GeV edges the whole-graph GNN keeps; phi-only sectors with a phi
overlap of 0.6 lost none and changed no logit by more than 5e-7).

A section over the budget is handled by a documented split, never by truncation: its core is
halved in phi down to ``min_sector_phi``, then in eta down to ``min_sector_eta``, and both
halves are sized again; a core that still overflows raises an ``InputError`` that names the
sizes (raise the section size or lower the overlap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backends.fpga.config import FpgaConfig
from taas.errors import InputError, TaasError

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class Sector:
    """A core ``eta in [eta_lo, eta_hi)``, ``phi in [phi_lo, phi_hi)`` (phi_lo in [-pi, pi))."""

    eta_lo: float
    eta_hi: float
    phi_lo: float
    phi_hi: float

    def halves(self, min_phi: float) -> tuple[Sector, Sector]:
        """The two halves in phi while the core is wider than ``min_phi``, else in eta."""
        if self.phi_hi - self.phi_lo > min_phi:
            mid = 0.5 * (self.phi_lo + self.phi_hi)
            return (Sector(self.eta_lo, self.eta_hi, self.phi_lo, mid),
                    Sector(self.eta_lo, self.eta_hi, mid, self.phi_hi))
        mid = 0.5 * (self.eta_lo + self.eta_hi)
        return (Sector(self.eta_lo, mid, self.phi_lo, self.phi_hi),
                Sector(mid, self.eta_hi, self.phi_lo, self.phi_hi))


@dataclass(frozen=True)
class Section:
    """One graph section: ``nodes`` (event node ids, local order), its edges as local indices
    ``src``/``dst`` with their event edge ids ``edge_ids``, and ``owned``, the edges whose
    scores this section provides."""

    sector: Sector
    nodes: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    edge_ids: np.ndarray
    owned: np.ndarray


def _in_phi_range(phi: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``phi`` (radians) inside ``[lo, hi)`` modulo 2 pi."""
    if hi - lo >= TWO_PI:
        return np.ones(len(phi), dtype=bool)
    return np.mod(phi - lo, TWO_PI) < hi - lo


def _core_mask(sector: Sector, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    return ((eta >= sector.eta_lo) & (eta < sector.eta_hi)
            & _in_phi_range(phi, sector.phi_lo, sector.phi_hi))


def _section(sector: Sector, eta: np.ndarray, phi: np.ndarray, src: np.ndarray,
             dst: np.ndarray, config: FpgaConfig) -> Section:
    core = _core_mask(sector, eta, phi)
    region = ((eta >= sector.eta_lo - config.eta_overlap)
              & (eta < sector.eta_hi + config.eta_overlap)
              & _in_phi_range(phi, sector.phi_lo - config.phi_overlap,
                              sector.phi_hi + config.phi_overlap))
    owned_edges = core[src]
    region[dst[owned_edges]] = True  # the far end of every owned edge is in the section
    edge_ids = np.flatnonzero(region[src] & region[dst])
    nodes = np.flatnonzero(region)
    local = np.full(len(eta), -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    return Section(sector, nodes, local[src[edge_ids]], local[dst[edge_ids]], edge_ids,
                   owned_edges[edge_ids])


def split_sections(eta: np.ndarray, phi: np.ndarray, src: np.ndarray, dst: np.ndarray,
                   config: FpgaConfig) -> list[Section]:
    """The sections of a graph with node coordinates ``eta``, ``phi`` (radians) and directed
    edges ``src -> dst``; sectors without owned edges are dropped."""
    eta = np.asarray(eta, np.float64)
    phi = np.asarray(phi, np.float64)
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    if len(eta) == 0 or len(src) == 0:
        return []
    lo, hi = float(eta.min()), float(np.nextafter(eta.max(), np.inf))
    eta_edges = np.linspace(lo, hi, config.eta_sectors + 1)
    phi_edges = np.linspace(-math.pi, math.pi, config.phi_sectors + 1)
    pending = [Sector(float(eta_edges[i]), float(eta_edges[i + 1]), float(phi_edges[j]),
                      float(phi_edges[j + 1]))
               for i in range(config.eta_sectors) for j in range(config.phi_sectors)]
    # nodes exactly at +pi (or numerically above) belong to the first phi core
    phi = np.where(phi >= math.pi, phi - TWO_PI, phi)
    sections: list[Section] = []
    while pending:
        sector = pending.pop()
        section = _section(sector, eta, phi, src, dst, config)
        if not section.owned.any():
            continue
        if len(section.nodes) <= config.section_nodes \
                and len(section.edge_ids) <= config.section_edges:
            sections.append(section)
            continue
        if sector.phi_hi - sector.phi_lo <= config.min_sector_phi \
                and sector.eta_hi - sector.eta_lo <= config.min_sector_eta:
            raise InputError(
                f"graph too dense for the FPGA sections: the sector eta [{sector.eta_lo:.2f}, "
                f"{sector.eta_hi:.2f}) x phi [{sector.phi_lo:.2f}, {sector.phi_hi:.2f}) needs "
                f"{len(section.nodes)} nodes / {len(section.edge_ids)} edges with its overlap, "
                f"over the section size {config.section_nodes} / {config.section_edges} even "
                "at the minimum sector size; raise section_nodes/section_edges or lower "
                "eta_overlap/phi_overlap")
        pending.extend(sector.halves(config.min_sector_phi))
    return sections


def merge_scores(n_edges: int, sections: list[Section], scores: list[np.ndarray]
                 ) -> np.ndarray:
    """Event edge scores from each section's scores of its own edges; checks that every edge
    is scored by exactly one section."""
    merged = np.zeros(n_edges, dtype=np.float64)
    times = np.zeros(n_edges, dtype=np.int64)
    for section, score in zip(sections, scores, strict=True):
        ids = section.edge_ids[section.owned]
        merged[ids] = np.asarray(score)[section.owned]
        np.add.at(times, ids, 1)
    if n_edges and not (times == 1).all():
        raise TaasError(f"section merge: {int((times == 0).sum())} edges unscored, "
                        f"{int((times > 1).sum())} scored more than once")
    return merged
