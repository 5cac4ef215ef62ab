"""The CPU seeding stage contract and the configuration's validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from seeding_synth import make_event, random_particles

from backends.cpu.seeding import CpuSeeding
from taas.detector.detector import Detector
from taas.detector.modules import Modules
from taas.edm.hits import Measurements, Spacepoints
from taas.edm.tracks import Seeds
from taas.errors import InputError
from taas.seeding import SeedingConfig, find_seeds

#: The toy events have no clusters: their stage runs without the cluster-shape cut (which
#: then reads no measurement) and gets a zero-filled measurement table for the contract, as
#: long as the space points' measurement_index needs (the stage checks that range).
NO_SHAPES = SeedingConfig(cluster_shape_cut=False)


def _tensors(spacepoints: Spacepoints) -> dict[str, np.ndarray]:
    n = int(spacepoints["measurement_index"].max()) + 1 if len(spacepoints) else 0
    meas = Measurements({s.name: np.zeros((n, *s.shape[1:]), s.dtype)
                         for s in Measurements.SPECS})
    return {**meas.to_tensors(), **spacepoints.to_tensors()}


@pytest.fixture(scope="module")
def stage() -> CpuSeeding:
    return CpuSeeding(Detector(Modules.empty(), name="none"), NO_SHAPES)


def test_stage_runs_on_tensors(stage):
    rng = np.random.default_rng(11)
    event = make_event(random_particles(50, rng), rng)
    out = stage.run(_tensors(event.spacepoints))
    assert set(out) == {s.name for s in Seeds.tensor_specs()}
    seeds = Seeds.from_tensors(out)
    assert len(seeds) > 0
    assert seeds.equals(find_seeds(event.spacepoints, NO_SHAPES))
    assert stage.device == "cpu"
    assert stage.qualified_name == "seeding_cpu"


@pytest.mark.parametrize("config", [NO_SHAPES, SeedingConfig()])
def test_stage_empty_input(config):
    out = CpuSeeding(Detector(Modules.empty(), name="none"), config).run(
        _tensors(Spacepoints.empty()))
    assert len(Seeds.from_tensors(out)) == 0


def test_stage_missing_tensor(stage):
    tensors = _tensors(Spacepoints.empty())
    del tensors["spacepoints.x"]
    with pytest.raises(InputError, match=r"spacepoints\.x"):
        stage.run(tensors)


def test_stage_custom_config():
    cfg = SeedingConfig(max_seeds_per_middle_sp=2)
    assert CpuSeeding(Detector(Modules.empty()), cfg).config is cfg


def test_default_config_derived_values():
    cfg = SeedingConfig()
    assert cfg.min_helix_radius == pytest.approx(833.9, abs=0.1)  # 500 MeV in 2 T
    assert cfg.highland == pytest.approx(2.695, abs=0.001)
    assert 100 < cfg.n_phi_bins < 400
    edges = cfg.r_band_edges
    assert edges[0] == cfg.r_min
    assert edges[-1] == cfg.r_max
    assert np.all(np.diff(edges) <= cfg.r_bin_width + 1e-9)
    assert np.arcsinh(cfg.cot_theta_max) == pytest.approx(2.7, abs=1e-4)
    assert cfg.collision_region_min == -200.0
    assert cfg.collision_region_max == 200.0
    assert cfg.impact_max == 1.0


@pytest.mark.parametrize(("changes", "match"), [
    ({"min_pt": 0.0}, "min_pt must be > 0"),
    ({"delta_r_top_min": 300.0}, "delta_r_top_min"),
    ({"collision_region_min": 10.0, "collision_region_max": -10.0}, "collision_region_min"),
    ({"r_min": 0.5}, "r_min"),
    ({"r_middle_min": 300.0}, "r_middle_min"),
    ({"sigma_scattering": -1.0}, "sigma_scattering must be >= 0"),
    ({"bz": float("nan")}, "finite"),
    ({"min_compatible_tops": 3}, "min_compatible_tops"),
    ({"slope_weight_factor": -1.0}, "slope_weight_factor must be >= 0"),
    ({"shape_excess_cells": -1.0}, "shape_excess_cells must be >= 0"),
])
def test_config_rejects_bad_values(changes, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SeedingConfig(), **changes)


@pytest.mark.parametrize("changes", [{"max_seeds_per_middle_sp": 2.5},
                                     {"min_pt": "500"}, {"interaction_point_cut": 1}])
def test_config_rejects_wrong_types(changes):
    with pytest.raises(TypeError):
        dataclasses.replace(SeedingConfig(), **changes)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SeedingConfig().min_pt = 1.0  # type: ignore[misc]
