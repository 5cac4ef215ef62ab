"""A toy barrel detector and a truth simulation that share nothing with the fitter but the helix.

The simulation follows each particle layer by layer: a vectorised bisection finds the crossing
with the layer's cylinder (to pick the module), ``helix.intersect_plane`` (itself checked
against scipy in ``test_helix.py``) the exact crossing with the module plane; there the true
bound parameters are recorded, and a Highland kink with the material model's width is applied
along the two directions orthogonal to the track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taas.detector import Detector, Modules
from taas.detector.modules import ROTATION_COLUMNS
from taas.edm.hits import Measurements
from taas.edm.tracks import ProtoTracks
from taas.tracking import helix
from taas.tracking.material import X0_SILICON, highland_theta0
from taas.tracking.parameters import direction, free_to_bound

RADII = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1000.0])
SIGMA_U, SIGMA_V = 0.010, 0.050
THICKNESS = 0.3


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random proper rotations (n, 3, 3)."""
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    return q * np.sign(np.linalg.det(q))[:, None, None]


def barrel_detector(radii: np.ndarray = RADII, thickness: float = THICKNESS,
                    pitch: float = 0.05) -> Detector:
    """Layers of flat staves tangent to cylinders; u along phi, v along z, w outwards."""
    cols: dict[str, list] = {k: [] for k in ("module_key", "layer_id", "module_id", "cx", "cy",
                                             "cz", "hu", "hv", *ROTATION_COLUMNS)}
    for layer, r in enumerate(radii):
        n_phi = max(8, int(np.ceil(2 * np.pi * r / 40)))
        phis = 2 * np.pi * np.arange(n_phi) / n_phi
        for i, ph in enumerate(phis):
            c, s = np.cos(ph), np.sin(ph)
            rot = np.array([[-s, 0, c], [c, 0, s], [0, 1, 0]])  # columns u, v, w
            cols["module_key"].append((layer + 1) * 10000 + i)
            cols["layer_id"].append(layer + 1)
            cols["module_id"].append(i)
            cols["cx"].append(r * c)
            cols["cy"].append(r * s)
            cols["cz"].append(0.0)
            cols["hu"].append(1.02 * r * np.tan(np.pi / n_phi))
            cols["hv"].append(1.5 * r + 20)
            for name, value in zip(ROTATION_COLUMNS, rot.reshape(-1), strict=True):
                cols[name].append(value)
    n = len(cols["module_key"])
    hu, hv = np.array(cols.pop("hu")), np.array(cols.pop("hv"))
    n_u, n_v = np.ceil(2 * hu / pitch).astype(int), np.ceil(2 * hv / pitch).astype(int)
    return Detector(Modules(
        **{k: np.array(v) for k, v in cols.items()}, volume_id=np.full(n, 8),
        thickness=np.full(n, thickness), min_hu=hu, max_hu=hu, hv=hv,
        pitch_u=2 * hu / n_u, pitch_v=2 * hv / n_v, n_u=n_u, n_v=n_v), name="toy-barrel")


@dataclass
class TruthTracks:
    """N particles crossing every layer: true states on each crossed module."""

    free0: np.ndarray  #: (N, 8) at production
    rows: np.ndarray  #: (N, L) module rows
    params: np.ndarray  #: (N, L, 6) true bound parameters arriving at each module
    w: np.ndarray  #: (N, L) local w of the true crossing (should be ~0)


def generate_particles(n: int, rng: np.random.Generator, pt: tuple[float, float] = (1.0, 10.0),
                       eta: float = 1.0) -> np.ndarray:
    """Free vectors at the origin: uniform phi, eta in (-eta, eta), 1/pT uniform, both charges."""
    phi = rng.uniform(-np.pi, np.pi, n)
    theta = 2 * np.arctan(np.exp(-rng.uniform(-eta, eta, n)))
    pt_ = 1.0 / rng.uniform(1 / pt[1], 1 / pt[0], n)
    q = rng.choice([-1.0, 1.0], n)
    free = np.zeros((n, 8))
    free[:, helix.DIR] = direction(phi, theta)
    free[:, helix.QOP] = q * np.sin(theta) / pt_
    return free


def _cylinder_path(free: np.ndarray, radius: float, bz: float) -> np.ndarray:
    """Path to the transverse radius ``radius`` (moving outwards), by vectorised bisection."""
    lo = np.zeros(len(free))
    hi = np.full(len(free), 4.0 * radius)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        r = np.hypot(*helix.helix_at(free, mid, bz)[:, :2].T)
        outside = r > radius
        hi = np.where(outside, mid, hi)
        lo = np.where(outside, lo, mid)
    return 0.5 * (lo + hi)


def simulate(detector: Detector, free0: np.ndarray, rng: np.random.Generator, bz: float = 2.0,
             scattering: bool = True) -> TruthTracks:
    """Propagate particles through every layer, recording true states, applying kinks."""
    modules = detector.modules
    layers = np.unique(modules["layer_id"])
    free = free0.copy()
    rows_out, params_out, w_out = [], [], []
    for layer in layers:
        in_layer = np.flatnonzero(modules["layer_id"] == layer)
        n_phi = len(in_layer)
        radius = float(np.hypot(modules["cx"][in_layer[0]], modules["cy"][in_layer[0]]))
        at_cyl = helix.helix_at(free, _cylinder_path(free, radius, bz), bz)
        sector = np.round(np.arctan2(at_cyl[:, 1], at_cyl[:, 0]) / (2 * np.pi / n_phi))
        best_s = np.full(len(free), np.inf)
        best_row = np.zeros(len(free), int)
        for shift in (-1, 0, 1):
            rows = in_layer[((sector + shift) % n_phi).astype(int)]
            s, ok = helix.intersect_plane(free, detector.center[rows],
                                          detector.rotation[rows][:, :, 2], bz)
            moved = helix.helix_at(free, np.where(ok, s, 0.0), bz)
            uvw = detector.global_to_local(rows, moved[:, :3])
            inside = ok & (s > 0) & detector.inside_bounds(rows, uvw[:, 0], uvw[:, 1])
            better = inside & (s < best_s)
            best_s = np.where(better, s, best_s)
            best_row = np.where(better, rows, best_row)
        assert np.isfinite(best_s).all(), "a particle missed a layer of the toy barrel"
        free = helix.helix_at(free, best_s, bz)
        rot = detector.rotation[best_row]
        uvw = detector.global_to_local(best_row, free[:, :3])
        rows_out.append(best_row)
        params_out.append(free_to_bound(free, detector.center[best_row], rot))
        w_out.append(uvw[:, 2])
        if scattering:
            free[:, helix.DIR] = _kink(free, rot[:, :, 2], modules["thickness"][best_row], rng)
    return TruthTracks(free0, np.stack(rows_out, 1), np.stack(params_out, 1), np.stack(w_out, 1))


def _kink(free: np.ndarray, normal: np.ndarray, thickness: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """New directions after Gaussian kinks of width theta0 along e_phi and e_theta."""
    t = free[:, helix.DIR]
    cos_inc = np.abs(np.einsum("ni,ni->n", normal, t))
    theta0 = highland_theta0(free[:, helix.QOP], thickness / cos_inc / X0_SILICON)
    phi, theta = np.arctan2(t[:, 1], t[:, 0]), np.arccos(t[:, 2])
    e_phi = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], axis=1)
    e_theta = np.stack([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi),
                        -np.sin(theta)], axis=1)
    a = rng.normal(size=(2, len(t))) * theta0
    new = t + a[0][:, None] * e_phi + a[1][:, None] * e_theta
    return new / np.linalg.norm(new, axis=1, keepdims=True)


def measure(detector: Detector, truth: TruthTracks, rng: np.random.Generator,
            n_layers: int | None = None) -> tuple[Measurements, ProtoTracks]:
    """Smeared measurements of the first ``n_layers`` crossings, in shuffled order, and the
    proto-tracks listing them (also shuffled within each track)."""
    n, n_all = truth.rows.shape
    n_layers = n_all if n_layers is None else n_layers
    rows = truth.rows[:, :n_layers].reshape(-1)
    u = truth.params[:, :n_layers, 0].reshape(-1) + rng.normal(0, SIGMA_U, rows.size)
    v = truth.params[:, :n_layers, 1].reshape(-1) + rng.normal(0, SIGMA_V, rows.size)
    perm = rng.permutation(rows.size)  # measurement table order is arbitrary
    m = rows.size
    meas = Measurements(module_key=detector.modules["module_key"][rows][perm],
                        local_u=u[perm], local_v=v[perm], var_u=np.full(m, SIGMA_U**2),
                        var_v=np.full(m, SIGMA_V**2), size_u=np.ones(m, int),
                        size_v=np.ones(m, int), n_cells=np.ones(m, int), charge=np.ones(m))
    where = np.empty(m, int)
    where[perm] = np.arange(m)
    indices = where.reshape(n, n_layers)
    indices = np.take_along_axis(indices, rng.permuted(np.tile(np.arange(n_layers), (n, 1)),
                                                       axis=1), axis=1)
    protos = ProtoTracks(offsets=np.arange(n + 1) * n_layers, indices=indices.reshape(-1))
    return meas, protos
