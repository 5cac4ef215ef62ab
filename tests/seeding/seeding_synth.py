"""Synthetic events for the seeding tests: analytic helices through a toy Generic-like pixel
detector (barrel cylinders and endcap disks), in a uniform Bz field, with small smearing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taas.edm.hits import Spacepoints
from taas.seeding.config import PT_PER_TESLA_MM

BARREL_R = (32.0, 72.0, 116.0, 172.0)
BARREL_HALF_Z = 490.0
DISK_Z = (600.0, 700.0, 820.0, 960.0, 1100.0, 1300.0, 1500.0)
DISK_R = (30.0, 175.0)


@dataclass
class Particles:
    pt: np.ndarray  # MeV
    eta: np.ndarray
    phi: np.ndarray
    q: np.ndarray
    vz: np.ndarray  # mm


@dataclass
class SynthEvent:
    spacepoints: Spacepoints
    particle: np.ndarray  # particle index of each space point
    barrel: np.ndarray  # space point lies on a barrel layer
    particles: Particles


def random_particles(n: int, rng: np.random.Generator, pt: tuple[float, float] = (500., 1e4),
                     eta_max: float = 2.5, vz_max: float = 150.0) -> Particles:
    """pT uniform in 1/pT-ish (log-uniform), eta and phi uniform, vertex z uniform."""
    return Particles(pt=np.exp(rng.uniform(np.log(pt[0]), np.log(pt[1]), n)),
                     eta=rng.uniform(-eta_max, eta_max, n), phi=rng.uniform(-np.pi, np.pi, n),
                     q=rng.choice([-1.0, 1.0], n), vz=rng.uniform(-vz_max, vz_max, n))


def _position(radius: np.ndarray, h: np.ndarray, phi0: np.ndarray,
              psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transverse position after turning by psi on a circle through the origin."""
    x = radius * h * (np.sin(phi0 + h * psi) - np.sin(phi0))
    y = -radius * h * (np.cos(phi0 + h * psi) - np.cos(phi0))
    return x, y


def make_event(p: Particles, rng: np.random.Generator, bz: float = 2.0,
               smear: float = 0.02) -> SynthEvent:
    """Intersections of each helix (vertex on the z axis) with every layer it crosses on its
    way out (first half turn only), smeared by ``smear`` mm in x, y, z."""
    radius = p.pt / (PT_PER_TESLA_MM * bz)
    cot = np.sinh(p.eta)
    h = -p.q  # a positive charge turns clockwise in +Bz
    xs, ys, zs, pids, barrel = [], [], [], [], []
    ids = np.arange(len(p.pt))
    for layer_r in BARREL_R:
        ok = layer_r <= 2.0 * radius
        psi = 2.0 * np.arcsin(np.minimum(layer_r / (2.0 * radius), 1.0))
        z = p.vz + radius * psi * cot
        ok &= np.abs(z) < BARREL_HALF_Z
        x, y = _position(radius, h, p.phi, psi)
        xs.append(x[ok]), ys.append(y[ok]), zs.append(z[ok]), pids.append(ids[ok])
        barrel.append(np.ones(ok.sum(), bool))
    for disk_z in DISK_Z:
        with np.errstate(divide="ignore", invalid="ignore"):
            z_target = np.where(cot >= 0, disk_z, -disk_z)
            s = (z_target - p.vz) / cot  # transverse arc length
            psi = s / radius
        ok = np.isfinite(psi) & (psi > 0) & (psi < np.pi)
        psi = np.where(ok, psi, 0.0)
        r_hit = 2.0 * radius * np.sin(psi / 2.0)
        ok &= (r_hit >= DISK_R[0]) & (r_hit <= DISK_R[1])
        x, y = _position(radius, h, p.phi, psi)
        xs.append(x[ok]), ys.append(y[ok]), zs.append(z_target[ok]), pids.append(ids[ok])
        barrel.append(np.zeros(ok.sum(), bool))
    x, y, z = (np.concatenate(a) for a in (xs, ys, zs))
    n = len(x)
    x = x + rng.normal(0.0, smear, n)
    y = y + rng.normal(0.0, smear, n)
    z = z + rng.normal(0.0, smear, n)
    r = np.hypot(x, y)
    sp = Spacepoints(measurement_index=np.arange(n), x=x, y=y, z=z, r=r,
                     phi=np.arctan2(y, x), eta=np.arcsinh(z / r))
    return SynthEvent(sp, np.concatenate(pids), np.concatenate(barrel), p)


def pure_seed_particle(event: SynthEvent, seeds: np.ndarray) -> np.ndarray:
    """Particle of each (n, 3) seed whose three space points share one, else -1."""
    pid = event.particle[seeds]
    pure = (pid[:, 0] == pid[:, 1]) & (pid[:, 1] == pid[:, 2])
    return np.where(pure, pid[:, 0], -1)


def seedable(event: SynthEvent) -> np.ndarray:
    """Particles with space points on at least three distinct layers."""
    layer = np.where(event.barrel, np.round(event.spacepoints["r"]),
                     1e4 + np.round(np.abs(event.spacepoints["z"])))
    pairs = np.unique(np.stack([event.particle, layer], axis=1), axis=0)
    n_layers = np.bincount(pairs[:, 0].astype(np.int64), minlength=len(event.particles.pt))
    return n_layers >= 3
