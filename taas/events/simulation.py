"""Simulate events with ACTS (particle gun -> Fatras -> geometric digitization) into ACTS CSV.

One call writes, into ``out_dir``: per event the ACTS CSV files ``read_acts_event`` reads
(``eventNNNNNNNNN-cells.csv``, ``-measurements.csv``, ``-measurement-simhit-map.csv``,
``-hits.csv``, ``-particles.csv``, ``-particles_simulated.csv``), plus ``detector.parquet`` (the
module table, so readers need no ACTS), ``digitization.json`` (the ACTS digitization config
used), ``acts-timing.csv`` (ACTS' per-algorithm timing) and ``dataset.json`` (the parameters).

The sequencer runs single-threaded: ACTS derives every random stream from the seed and the
event number, so the same seed (and ``skip``) gives byte-identical files.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from taas.detector.acts_generic import (
    STRIP_VOLUMES,
    build_generic_detector,
    check_strip_readout,
    digitization_config_json,
    generic_tracking_geometry,
)
from taas.detector.detector import Detector
from taas.detector.field import SolenoidField, UniformField, simulation_field
from taas.detector.geometry_id import decode
from taas.detector.material import MATERIAL_FILE, generic_material
from taas.errors import InputError
from taas.events.event import write_manifest
from taas.events.noise import add_noise_hits, check_noise_fraction, noise_rng
from taas.events.presets import DEFAULT_PDG
from taas.io.atomic import atomic_write

log = logging.getLogger(__name__)

#: Beam spot (mm): Gaussian, as in ACTS' full_chain_test.
BEAM_SIGMA_XY_MM = 0.0125
#: The gun's widest |eta|: the last pixel discs' inner ring (module centres at |eta| 3.82, edges
#: near 4, as TrackML's stated acceptance); beyond it a particle leaves too few hits to track.
MAX_ETA = 4.0
#: The gun's pT distribution within its range: ``flat`` (ACTS' benchmarks, the presets) or
#: ``log`` (uniform in log pT: as many particles per decade, a soft spectrum like the
#: low-pT-dominated TrackML events, whose hits are three quarters from particles below 1 GeV).
PT_SPECTRA = ("flat", "log")
BEAM_SIGMA_Z_MM = 55.5
#: Solenoid field along z at the centre (T); uniform everywhere unless ``field="trackml"``.
FIELD_T = 2.0
#: The (r, z) grid (mm) on which a non-uniform field is handed to ACTS as an interpolated map:
#: wider than the Generic detector's world (r < 1.1 m, |z| < 3 m), so that no propagation step
#: leaves it; 10 mm bins (the field changes by < 0.2% per bin).
FIELD_MAP_R = (0.0, 2000.0)
FIELD_MAP_Z = (-4000.0, 4000.0)
FIELD_MAP_STEP = 10.0


def write_field_map_rz(field: SolenoidField, path: Path) -> Path:
    """``field`` as the text (r, z) map ACTS' ``MagneticFieldMapRz`` reads: lines of
    ``r z Br Bz`` (mm, T) with z varying slowest. The whole z range is written, not the first
    quadrant: ACTS mirrors a quadrant map symmetrically, where a solenoid's Br is odd in z."""
    r = np.arange(FIELD_MAP_R[0], FIELD_MAP_R[1] + FIELD_MAP_STEP / 2, FIELD_MAP_STEP)
    z = np.arange(FIELD_MAP_Z[0], FIELD_MAP_Z[1] + FIELD_MAP_STEP / 2, FIELD_MAP_STEP)
    zz, rr = np.meshgrid(z, r, indexing="ij")
    bz, br = field.bz_br(np.stack([rr.ravel(), np.zeros(rr.size), zz.ravel()], axis=1))
    np.savetxt(path, np.stack([rr.ravel(), zz.ravel(), br, bz], axis=1), fmt="%.7g")
    return path


def _acts_field(acts: Any, name: str, work: Path) -> Any:
    """The ACTS field provider of the simulation field ``name`` (``SIMULATION_FIELDS``): a
    constant field, or the solenoid as an interpolated (r, z) map written under ``work``."""
    field = simulation_field(name)
    if isinstance(field, UniformField):
        return acts.ConstantBField(acts.Vector3(0.0, 0.0, field.bz * acts.UnitConstants.T))
    return acts.MagneticFieldMapRz(str(write_field_map_rz(field, work / "field-map-rz.txt")))


@lru_cache(maxsize=2)
def _digitization_json(strip_readout: str) -> str:
    """The Generic detector's digitization config as JSON text with ``strip_readout`` strips
    (built once per process and readout)."""
    return digitization_config_json(build_generic_detector(), strip_readout=strip_readout)


def _species_generators(acts: Any, ex: Any, *, vertices: int, particles_per_vertex: int,
                        pt_range: tuple[float, float], eta_max: float,
                        pdg: Sequence[int], pt_spectrum: str) -> list[Any]:
    """One event-generator entry per species; the vertices are shared out among the species.

    ACTS' parametric gun fires one species per vertex, so a vertex holds muons *or* pions; with
    fewer vertices than species the first species win.
    """
    u = acts.UnitConstants
    stddev = acts.Vector4(BEAM_SIGMA_XY_MM * u.mm, BEAM_SIGMA_XY_MM * u.mm,
                          BEAM_SIGMA_Z_MM * u.mm, 0.0)
    generators = []
    for k, code in enumerate(pdg):
        n_vertices = vertices // len(pdg) + (k < vertices % len(pdg))
        if n_vertices == 0:
            continue
        gun = ex.ParametricParticleGenerator(
            p=(pt_range[0] * u.GeV, pt_range[1] * u.GeV), pTransverse=True,
            pLogUniform=pt_spectrum == "log",
            eta=(-eta_max, eta_max), etaUniform=True, numParticles=particles_per_vertex,
            pdg=acts.PdgParticle(abs(code)), randomizeCharge=True)
        generators.append(ex.EventGenerator.Generator(
            multiplicity=ex.FixedMultiplicityGenerator(n=n_vertices),
            vertex=ex.GaussianVertexGenerator(mean=acts.Vector4(0, 0, 0, 0), stddev=stddev),
            particles=gun))
    return generators


def binarize_strip_cells(cells_csv: Path) -> int:
    """Rewrite the ``value`` of every strip cell (``STRIP_VOLUMES``) of an ACTS cells file to 1.

    ACTS 48's geometric digitization with ``"digital": true`` weighs every cell equally in the
    cluster position, but it still writes each cell's deposited path length as its value; a
    binary readout reports only that a strip fired, so the value is set here. The file is
    rewritten in place, other columns byte for byte. Returns the number of strip cells.
    """
    lines = cells_csv.read_text().splitlines()
    header = lines[0].split(",")
    id_col, value_col = header.index("geometry_id"), header.index("value")
    rows = [line.split(",") for line in lines[1:]]
    volumes = decode(np.array([int(r[id_col]) for r in rows], dtype=np.uint64))["volume"]
    on_strips = np.isin(volumes, STRIP_VOLUMES)
    for row in np.flatnonzero(on_strips):
        rows[row][value_col] = "1"
    text = "\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n"
    atomic_write(cells_csv, lambda p: p.write_text(text))
    return int(on_strips.sum())


def _post_process(out: Path, event_ids: range, detector: Detector, *, seed: int,
                  strip_readout: str, noise_fraction: float) -> None:
    """What ACTS does not do, applied to its files: binary strip values, then noise hits
    (after, so that analog noise strips draw from the event's own strip values)."""
    for event in event_ids:
        if strip_readout == "binary":
            binarize_strip_cells(out / f"event{event:09d}-cells.csv")
        if noise_fraction > 0:
            added = add_noise_hits(out, event, detector, noise_fraction, noise_rng(seed, event))
            log.debug("event %d: %d noise hits", event, added)


def _progress_algorithm(ex: Any, level: Any, bar: Any) -> Any:
    """A sequencer algorithm that ticks ``bar`` once per event (runs last in each event)."""

    class Tick(ex.IAlgorithm):
        def __init__(self) -> None:
            super().__init__(name="taas-progress", level=level)

        def execute(self, context: Any) -> Any:
            bar.update(1)
            return ex.ProcessCode.SUCCESS

    return Tick()


def check_simulated(directory: str | Path, want: dict[str, Any], *, min_events: int = 0
                    ) -> Path:
    """``directory`` when its ``dataset.json`` records the simulation ``want`` (e.g. seed,
    vertices, particles_per_vertex, strip_readout, noise_fraction) with at least ``min_events``
    events: events simulated elsewhere (a GPU machine has no ACTS for its Python) then stand in
    for a fresh :func:`simulate`. A ``ValueError`` names what differs otherwise. Manifests
    written before the strip readout, the field, the pT spectrum and the noise were options
    record none: their strips are analog, their field uniform, their pT flat, their noise 0."""
    directory = Path(directory)
    meta = {"strip_readout": "analog", "field": "uniform", "pt_spectrum": "flat",
            "noise_fraction": 0.0, **json.loads((directory / "dataset.json").read_text())}
    if any(meta.get(k) != v for k, v in want.items()) or meta.get("events", 0) < min_events:
        raise ValueError(f"{directory}: dataset.json {meta} does not hold "
                         f"{min_events or 'the'} events of {want}")
    return directory


def _check_gun(pt_range: tuple[float, float], pt_spectrum: str, eta_max: float) -> None:
    """``InputError`` naming the particle-gun setting that cannot be simulated."""
    if pt_spectrum not in PT_SPECTRA:
        raise InputError(f"pt_spectrum must be one of {list(PT_SPECTRA)}, got {pt_spectrum!r}")
    if not 0 < pt_range[0] < pt_range[1]:
        raise InputError(f"pt_range must be 0 < min < max (GeV), got {list(pt_range)}")
    if not 0 < eta_max <= MAX_ETA:
        raise InputError(f"eta_max must be in (0, {MAX_ETA:g}] (the detector's acceptance), "
                         f"got {eta_max}")


def simulate(
    out_dir: str | Path,
    *,
    events: int,
    vertices: int,
    particles_per_vertex: int,
    seed: int,
    pt_range: tuple[float, float] = (0.5, 10.0),
    eta_max: float = 2.5,
    pdg: Sequence[int] = DEFAULT_PDG,
    skip: int = 0,
    progress: bool = True,
    strip_readout: str = "analog",
    field: str = "uniform",
    pt_spectrum: str = "flat",
    noise_fraction: float = 0.0,
) -> Path:
    """Simulate ``events`` particle-gun events on the Generic detector into ``out_dir``.

    Each event has ``vertices`` Gaussian-smeared vertices (sigma_z 55.5 mm) of
    ``particles_per_vertex`` particles in ``pt_range`` (GeV; flat in pT, or flat in log pT
    with ``pt_spectrum="log"``, ``PT_SPECTRA``) and in
    |eta| < ``eta_max`` (the presets' 2.5 as ACTS' benchmarks; TrackML's events reach about 4,
    the pixel end caps' inner rings), species ``pdg`` with random charge. ``skip`` starts at
    event number ``skip`` (files are numbered by event). ``strip_readout`` (``"analog"`` or
    ``"binary"``, ``taas.detector.acts_generic.STRIP_READOUTS``) is the strip volumes' cell
    readout: binary strips read 1.0 per fired strip, like TrackML's strips and the ATLAS ITk
    strips (ABCStar).
    ``field`` (``taas.detector.field.SIMULATION_FIELDS``): a uniform 2 T field, or
    ``"trackml"``, the real TrackML sample's solenoid (2 T at the centre, ~1 T at the end
    caps' far discs), given to Fatras and the digitization as an (r, z) map; the manifest
    records it and readers attach it to the detector. ``noise_fraction`` (0 <= F < 1): noise
    hits, particle 0, are added to each event until they are F of its hits, on random modules
    with clusters like the real TrackML sample's noise (``taas.events.noise``; TrackML: 0.15),
    drawn from a generator of ``seed`` and the event number. Returns ``out_dir``.
    """
    import acts
    import acts.examples as ex
    import acts.examples.hepmc3
    from acts.examples.simulation import addDigitization, addFatras
    from tqdm import tqdm

    if events < 1 or vertices < 1 or particles_per_vertex < 1:
        raise ValueError("events, vertices and particles_per_vertex must be positive")
    _check_gun(pt_range, pt_spectrum, eta_max)
    check_strip_readout(strip_readout)
    check_noise_fraction(noise_fraction)
    simulation_field(field)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    detector = build_generic_detector()
    _, tracking_geometry = generic_tracking_geometry()
    digi_path = out / "digitization.json"
    text = _digitization_json(strip_readout)
    atomic_write(digi_path, lambda p: p.write_text(text))
    atomic_write(out / "detector.parquet", detector.to_parquet)
    atomic_write(out / MATERIAL_FILE, generic_material().to_parquet)
    t_setup = time.perf_counter() - t0

    level = acts.logging.WARNING
    with tempfile.TemporaryDirectory(prefix="taas-field-") as tmp:  # ACTS loads the map here
        acts_field = _acts_field(acts, field, Path(tmp))
    rnd = ex.RandomNumbers(seed=seed)
    seq = ex.Sequencer(events=events, skip=skip, numThreads=1, logLevel=level,
                       outputDir=str(out), outputTimingFile="acts-timing.csv",
                       trackFpes=False)

    generator = ex.EventGenerator(
        level=level,
        generators=_species_generators(acts, ex, vertices=vertices,
                                       particles_per_vertex=particles_per_vertex,
                                       pt_range=pt_range, eta_max=eta_max, pdg=pdg,
                                       pt_spectrum=pt_spectrum),
        randomNumbers=rnd, outputEvent="particle_gun_event")
    seq.addReader(generator)
    converter = ex.hepmc3.HepMC3InputConverter(
        level=level, inputEvent="particle_gun_event", outputParticles="particles_generated",
        outputVertices="vertices_generated", mergePrimaries=False)
    seq.addAlgorithm(converter)
    seq.addWhiteboardAlias("particles", "particles_generated")
    seq.addWhiteboardAlias("vertices_truth", "vertices_generated")
    seq.addWhiteboardAlias("particles_generated_selected", "particles_generated")
    seq.addWriter(ex.CsvParticleWriter(level=level, inputParticles="particles_generated",
                                       outputDir=str(out), outputStem="particles"))
    addFatras(seq, tracking_geometry, acts_field, rnd=rnd, outputDirCsv=out, logLevel=level)
    addDigitization(seq, tracking_geometry, acts_field, digiConfigFile=digi_path,
                    outputDirCsv=out, rnd=rnd, logLevel=level)

    with tqdm(total=events, desc="simulate", unit="event", disable=not progress) as bar:
        seq.addAlgorithm(_progress_algorithm(ex, level, bar))
        t1 = time.perf_counter()
        seq.run()
        t_run = time.perf_counter() - t1
    _post_process(out, range(skip, skip + events), detector, seed=seed,
                  strip_readout=strip_readout, noise_fraction=noise_fraction)

    info = {
        "source": "acts-fatras", "detector": detector.name, "seed": seed, "events": events,
        "skip": skip, "vertices": vertices, "particles_per_vertex": particles_per_vertex,
        "pt_range_gev": list(pt_range), "pt_spectrum": pt_spectrum, "eta_max": eta_max,
        "pdg": list(pdg),
        "field_t": FIELD_T, "beam_sigma_xy_mm": BEAM_SIGMA_XY_MM,
        "beam_sigma_z_mm": BEAM_SIGMA_Z_MM, "strip_readout": strip_readout, "field": field,
        "noise_fraction": noise_fraction,
        "acts_version": f"{acts.version.major}.{acts.version.minor}.{acts.version.patch}",
    }
    write_manifest(out, info)
    log.info("simulated %d events in %.2f s (%.3f s/event; setup %.2f s) into %s",
             events, t_run, t_run / events, t_setup, out)
    return out
