"""Noise hits in simulated events: clusters of cells that no particle made.

Why: the real TrackML sample has noise hits and Fatras makes none, so GNN models trained on
simulation never see one; on the real event noise roads are part of the fake tracks
(``benchmarks/real_data_working_point.py``). ``taas simulate --noise-fraction F`` adds them
after ACTS has written an event, as :func:`taas.events.simulation.binarize_strip_cells` edits
the strip cells.

What the noise follows, measured on the real sample
(``../shared/data/trackml/event000000001-{hits,truth,cells}.csv.gz``: 829 of its 5,527 hits,
15.0%, have ``particle_id`` 0, each with at least one cell):

* module: uniform over the detector's modules. Per module the sample has 0.044 noise hits
  (0.033-0.065 in each of its 9 volumes, 814 modules with one or two) while per area it ranges
  from 2.0 (long-strip end caps) to 40 per m^2 (pixel end caps).
* position: uniform in the module (the cell centroids' u / max_hu and v / hv quartiles are
  -0.47 / 0.03 / 0.49 and -0.52 / -0.10 / 0.46, as for the signal).
* cells: every one of the 829 clusters is a staircase, n = s0 + s1 - 1 cells for spans s0
  along ch0 and s1 along ch1 (a line crossing the sensor). Per group of volumes (``GROUPS``)
  the number of cells follows the measured histogram (mean 7.3 in the pixel barrel, 4.3 in the
  pixel end caps, 2.2-2.7 in the strips) and a step goes along ch1 with the measured share
  ``(mean s1 - 1) / (mean n - 1)`` (0.77 and 0.65 on pixels, 0.01-0.20 on strips).
* values: pixel cells from a gamma distribution with the measured mean and standard
  deviation (0.047 +- 0.023 in the barrel, 0.080 +- 0.070 in the end caps; the simulated signal
  pixels read 0.049 / 0.09 there). Strips read 1.0 (binary, as the sample); analog strips
  take values drawn from the event's own strip cells (the sample has no analog strips).

Truth: a noise hit is a measurement with cells and no simulated hit, which ``read_acts_event``
reads as particle 0 with NaN truth and weight 0, as the TrackML reader reads the sample's noise
(particle 0, weight 0); the metrics treat particle 0 as noise either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taas.detector.acts_generic import STRIP_VOLUMES
from taas.detector.detector import Detector
from taas.errors import InputError
from taas.events.acts_csv import LOCAL_KEY_2D
from taas.io.atomic import atomic_write
from taas.io.csv_table import csv_header, read_csv_columns

#: Mixed into the simulation seed so that the noise stream is independent of ACTS' streams.
NOISE_STREAM = 0x6E6F697365


@dataclass(frozen=True)
class NoiseClusters:
    """The noise clusters of a group of volumes, as measured on the real sample."""

    volumes: tuple[int, ...]
    #: Noise hits with 1, 2, ... cells.
    cells_per_hit: tuple[int, ...]
    #: Share of the staircase's steps along ch1 (the rest go along ch0).
    ch1_step: float
    #: Gamma mean and standard deviation of the cell values; None: the strip readout's values.
    value_mean: float | None = None
    value_sd: float = 0.0


GROUPS: tuple[NoiseClusters, ...] = (
    NoiseClusters((8,), (1, 5, 11, 12, 7, 8, 8, 5, 6, 5, 3, 1, 3, 0, 1, 0, 2, 0, 0, 1, 1, 0, 0,
                         1, 0, 1), 0.772, 0.0474, 0.0232),
    NoiseClusters((7, 9), (8, 14, 10, 9, 8, 8, 5, 1, 5, 0, 2), 0.652, 0.0802, 0.0696),
    NoiseClusters((13,), (41, 74, 79, 33, 13, 4, 2), 0.198),
    NoiseClusters((12, 14), (42, 27, 15, 11, 5, 1, 2), 0.150),
    NoiseClusters((17,), (54, 98, 80, 23, 11), 0.019),
    NoiseClusters((16, 18), (24, 17, 9, 5, 1, 4, 1, 0, 1), 0.011),
)


def check_noise_fraction(fraction: float) -> float:
    """``fraction`` when 0 <= fraction < 1; ``InputError`` (a ``ValueError``) otherwise."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"noise_fraction must be in [0, 1) (the share of an event's hits "
                         f"that are noise), got {fraction}")
    return float(fraction)


def noise_rng(seed: int, event_id: int) -> np.random.Generator:
    """The noise generator of event ``event_id`` of a simulation with ``seed``."""
    return np.random.default_rng([seed, event_id, NOISE_STREAM])


@dataclass(frozen=True)
class NoiseHits:
    """Generated noise: per hit its module row and local position, per cell its hit."""

    row: np.ndarray
    u: np.ndarray
    v: np.ndarray
    cell_hit: np.ndarray
    ch0: np.ndarray
    ch1: np.ndarray
    value: np.ndarray


def _group_of_rows(detector: Detector, rows: np.ndarray) -> np.ndarray:
    volume = detector.modules["volume_id"][rows]
    group = np.full(len(rows), -1)
    for g, clusters in enumerate(GROUPS):
        group[np.isin(volume, clusters.volumes)] = g
    if (group < 0).any():
        raise InputError(f"no noise model for volume {int(volume[group < 0][0])}")
    return group


def _clusters(detector: Detector, rows: np.ndarray, rng: np.random.Generator,
              strip_values: np.ndarray) -> NoiseHits:
    """One staircase cluster per module row, centred on a uniform point of the module."""
    m = detector.modules
    n = len(rows)
    group = _group_of_rows(detector, rows)
    size = np.ones(n, np.int64)
    step1 = np.zeros(n)
    for g, clusters in enumerate(GROUPS):
        sel = np.flatnonzero(group == g)
        counts = np.asarray(clusters.cells_per_hit, float)
        size[sel] = rng.choice(len(counts), size=len(sel), p=counts / counts.sum()) + 1
        step1[sel] = clusters.ch1_step
    # a uniform point of the trapezoid (rejection from its bounding rectangle)
    u, v = np.empty(n), np.empty(n)
    todo = np.arange(n)
    while len(todo):
        r = rows[todo]
        u[todo] = rng.uniform(-1.0, 1.0, len(todo)) * m["max_hu"][r]
        v[todo] = rng.uniform(-1.0, 1.0, len(todo)) * m["hv"][r]
        todo = todo[~detector.inside_bounds(r, u[todo], v[todo])]
    # staircase: from the first cell, each further cell one step along ch1 or ch0
    hit = np.repeat(np.arange(n), size)
    first = np.r_[0, np.cumsum(size)[:-1]]
    along1 = rng.random(len(hit)) < step1[hit]
    along1[first] = False
    along0 = ~along1
    along0[first] = False
    d0: np.ndarray = np.cumsum(along0) - np.cumsum(along0)[first][hit]
    d1: np.ndarray = np.cumsum(along1) - np.cumsum(along1)[first][hit]
    sign0, sign1 = (rng.choice([-1, 1], n) for _ in range(2))
    c0, c1 = detector.local_to_channel(rows, u, v)
    r = rows[hit]
    ch0 = c0[hit] + sign0[hit] * (d0 - _half(d0, hit, n))
    ch1 = c1[hit] + sign1[hit] * (d1 - _half(d1, hit, n))
    # move clusters that reach past the readout grid back onto it
    ch0 = ch0 - _overflow(ch0, m["n_u"][r], hit, n)[hit]
    ch1 = ch1 - _overflow(ch1, m["n_v"][r], hit, n)[hit]
    ch0 = np.clip(ch0, 0, m["n_u"][r] - 1).astype(np.int32)
    ch1 = np.clip(ch1, 0, m["n_v"][r] - 1).astype(np.int32)
    value = np.ones(len(hit))
    for g, clusters in enumerate(GROUPS):
        sel = group[hit] == g
        if clusters.value_mean is not None:
            shape = (clusters.value_mean / clusters.value_sd) ** 2
            value[sel] = rng.gamma(shape, clusters.value_mean / shape, int(sel.sum()))
        elif len(strip_values):
            value[sel] = rng.choice(strip_values, int(sel.sum()))
    cu, cv = detector.channel_to_local(r, ch0, ch1)
    weight = np.bincount(hit, value, n)
    u = np.bincount(hit, value * cu, n) / weight
    v = np.bincount(hit, value * cv, n) / weight
    return NoiseHits(rows, u, v, hit, ch0, ch1, value)


def _half(offset: np.ndarray, hit: np.ndarray, n: int) -> np.ndarray:
    """Per cell, half its cluster's largest offset (rounded down): centres the cluster."""
    top = np.zeros(n, np.int64)
    np.maximum.at(top, hit, offset)
    return (top // 2)[hit]


def _overflow(ch: np.ndarray, n_ch: np.ndarray, hit: np.ndarray, n: int) -> np.ndarray:
    """Per cluster the shift that brings its channels into [0, n_ch): positive past the end."""
    low = np.zeros(n, np.int64)
    np.minimum.at(low, hit, ch)
    high = np.zeros(n, np.int64)
    np.maximum.at(high, hit, ch - (n_ch - 1))
    return high - low


def generate_noise(detector: Detector, n_hits: int, rng: np.random.Generator,
                   strip_values: np.ndarray | None = None) -> NoiseHits:
    """``n_hits`` noise hits on uniformly random modules (see the module docstring), each with
    its cluster's value-weighted centroid inside the module's bounds. ``strip_values``: the
    values strip cells take (None or empty: 1.0, a binary readout)."""
    strips = np.zeros(0) if strip_values is None else np.asarray(strip_values, float)
    parts: list[NoiseHits] = []
    need = n_hits
    while need > 0:
        rows = rng.integers(0, len(detector), need)
        hits = _clusters(detector, rows, rng, strips)
        inside = detector.inside_bounds(rows, hits.u, hits.v)
        keep = np.flatnonzero(inside)
        cell_keep = inside[hits.cell_hit]
        renumber = np.cumsum(inside) - 1
        parts.append(NoiseHits(rows[keep], hits.u[keep], hits.v[keep],
                               renumber[hits.cell_hit[cell_keep]], hits.ch0[cell_keep],
                               hits.ch1[cell_keep], hits.value[cell_keep]))
        need -= len(keep)
    if not parts:
        return NoiseHits(*(np.zeros(0, t) for t in ("i8", "f8", "f8", "i8", "i4", "i4", "f8")))
    offsets = np.cumsum([0, *(len(p.row) for p in parts[:-1])])
    return NoiseHits(
        np.concatenate([p.row for p in parts]), np.concatenate([p.u for p in parts]),
        np.concatenate([p.v for p in parts]),
        np.concatenate([p.cell_hit + o for p, o in zip(parts, offsets, strict=True)]),
        *(np.concatenate([getattr(p, k) for p in parts]) for k in ("ch0", "ch1", "value")))


def noise_count(signal_hits: int, fraction: float) -> int:
    """Noise hits that make ``fraction`` of an event with ``signal_hits`` other hits."""
    return round(fraction * signal_hits / (1.0 - fraction))


def _append_rows(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Append rows to the CSV file ``path`` in its header's column order."""
    header = csv_header(path)
    missing = sorted(set(header) - set(columns))
    if missing:
        raise InputError(f"no noise value for columns {missing}", path=path)
    text = [",".join(str(x) for x in row)
            for row in zip(*(columns[name].tolist() for name in header), strict=True)]
    old = path.read_text()
    new = old + ("" if old.endswith("\n") else "\n") + "".join(line + "\n" for line in text)
    atomic_write(path, lambda p: p.write_text(new))


def add_noise_hits(directory: Path, event_id: int, detector: Detector, fraction: float,
                   rng: np.random.Generator) -> int:
    """Append noise hits to the ACTS CSV event ``event_id`` in ``directory`` so that they make
    ``fraction`` of its measurements: new rows in its cells and measurements files, with
    measurement ids after the last one and no simulated hit. Returns the noise hits added."""
    stem = directory / f"event{event_id:09d}"
    cells_path, meas_path = Path(f"{stem}-cells.csv"), Path(f"{stem}-measurements.csv")
    ids = read_csv_columns(meas_path, {"measurement_id": np.dtype("i8")})["measurement_id"]
    n_noise = noise_count(len(ids), check_noise_fraction(fraction))
    if n_noise == 0:
        return 0
    cells = read_csv_columns(cells_path, {"geometry_id": np.dtype("u8"),
                                          "value": np.dtype("f8")})
    on_strips = np.isin(detector.modules["volume_id"][detector.index_of(cells["geometry_id"])],
                        STRIP_VOLUMES)
    noise = generate_noise(detector, n_noise, rng, cells["value"][on_strips])
    m = detector.modules
    key = m["module_key"][noise.row]
    hit_id = ids.max(initial=-1) + 1 + np.arange(n_noise)
    _append_rows(cells_path, {
        "geometry_id": key[noise.cell_hit], "measurement_id": hit_id[noise.cell_hit],
        "channel0": noise.ch0, "channel1": noise.ch1,
        "timestamp": np.zeros(len(noise.ch0)), "value": noise.value})
    xyz = detector.local_to_global(noise.row, noise.u, noise.v)
    zeros = np.zeros(n_noise)
    _append_rows(meas_path, {
        "measurement_id": hit_id, "geometry_id": key,
        "local_key": np.full(n_noise, LOCAL_KEY_2D, dtype=object),
        "local0": noise.u, "local1": noise.v, "phi": zeros, "theta": zeros, "time": zeros,
        "var_local0": m["pitch_u"][noise.row] ** 2 / 12,
        "var_local1": m["pitch_v"][noise.row] ** 2 / 12,
        "var_phi": zeros, "var_theta": zeros, "var_time": zeros,
        "global_x": xyz[:, 0], "global_y": xyz[:, 1], "global_z": xyz[:, 2]})
    return n_noise
