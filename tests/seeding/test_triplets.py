"""Triplet seeding on analytic helices: efficiency, purity, vertex z, cuts, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from seeding_synth import (
    Particles,
    make_event,
    pure_seed_particle,
    random_particles,
    seedable,
)

from taas.edm.hits import Spacepoints
from taas.edm.tracks import Seeds
from taas.errors import InputError
from taas.seeding import SeedingConfig, find_seeds


def _one(pt: float, eta: float, vz: float, phi: float = 0.7, q: float = 1.0) -> Particles:
    return Particles(pt=np.array([pt]), eta=np.array([eta]), phi=np.array([phi]),
                     q=np.array([q]), vz=np.array([vz]))


def _spacepoints(xyz: np.ndarray) -> Spacepoints:
    x, y, z = np.asarray(xyz, float).reshape(-1, 3).T
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / r)
    return Spacepoints(measurement_index=np.arange(len(x)), x=x, y=y, z=z, r=r,
                       phi=np.arctan2(y, x), eta=eta)


@pytest.fixture(scope="module")
def event_500():
    rng = np.random.default_rng(42)
    event = make_event(random_particles(500, rng), rng)
    return event, find_seeds(event.spacepoints)


def test_efficiency_500_particles(event_500):
    event, seeds = event_500
    p = event.particles
    found = np.zeros(len(p.pt), bool)
    pid = pure_seed_particle(event, seeds["spacepoints"])
    found[pid[pid >= 0]] = True
    only_barrel = np.ones(len(p.pt), bool)
    only_barrel[event.particle[~event.barrel]] = False
    target = (p.pt > 1000.0) & seedable(event)
    assert target.sum() > 300
    eff_barrel = found[target & only_barrel].mean()
    eff_all = found[target].mean()
    assert eff_barrel > 0.95, eff_barrel
    assert eff_all > 0.90, eff_all
    # endcap-only region gets seeds too (disks-only tracks reach |eta| 2.5)
    assert found[target & ~only_barrel].mean() > 0.90


def test_purity_and_vertex_z(event_500):
    event, seeds = event_500
    pid = pure_seed_particle(event, seeds["spacepoints"])
    purity = np.mean(pid >= 0)
    print(f"seeds {len(seeds)}, purity {purity:.3f}")
    assert purity > 0.7, purity
    dz = seeds["z_vertex"][pid >= 0] - event.particles.vz[pid[pid >= 0]]
    # no scattering in the toy: the bottom-middle line points back within the smearing times
    # the lever arm (largest on the disks, where r is the smeared coordinate)
    assert np.median(np.abs(dz)) < 0.3
    assert np.max(np.abs(dz)) < 5.0
    assert np.all(seeds["quality"] <= 3 * 200.0)
    np.testing.assert_array_equal(np.sort(seeds["spacepoints"][:, 1], kind="stable"),
                                  seeds["spacepoints"][:, 1])
    # bottom below middle below top in r
    r = event.spacepoints["r"][seeds["spacepoints"]]
    assert np.all(r[:, 0] < r[:, 1])
    assert np.all(r[:, 1] < r[:, 2])


def test_at_most_max_seeds_per_middle(event_500):
    event, _ = event_500
    cfg = SeedingConfig(max_seeds_per_middle_sp=1)
    seeds = find_seeds(event.spacepoints, cfg)
    assert len(seeds) > 0
    assert np.bincount(seeds["spacepoints"][:, 1]).max() == 1


def test_shuffling_keeps_the_seeds(event_500):
    event, seeds = event_500
    sp = event.spacepoints
    perm = np.random.default_rng(7).permutation(len(sp))
    shuffled = find_seeds(sp.take(perm))
    mapped = perm[shuffled["spacepoints"]]
    assert {tuple(s) for s in mapped} == {tuple(s) for s in seeds["spacepoints"]}
    key = {tuple(s): (q, zv) for s, q, zv in zip(seeds["spacepoints"], seeds["quality"],
                                                    seeds["z_vertex"], strict=True)}
    for s, q, zv in zip(mapped, shuffled["quality"], shuffled["z_vertex"], strict=True):
        assert key[tuple(s)] == (q, zv)


def test_deterministic(event_500):
    event, seeds = event_500
    assert find_seeds(event.spacepoints).equals(seeds)


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_threads_share_the_middles_without_changing_a_seed(event_500, threads):
    event, seeds = event_500
    one: dict[str, int] = {}
    shared: dict[str, int] = {}
    assert find_seeds(event.spacepoints, stats=one).equals(seeds)
    assert find_seeds(event.spacepoints, SeedingConfig(threads=threads), stats=shared).equals(
        seeds)
    assert shared == one
    assert one["triplets"] > 0


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be > 0"):
        SeedingConfig(threads=0)


@pytest.mark.parametrize("eta", [0.1, 1.2, 2.2])
def test_low_pt_particle_gives_no_seed(eta):
    rng = np.random.default_rng(3)
    slow = make_event(_one(300.0, eta, 10.0), rng)
    assert len(slow.spacepoints) >= 3
    assert len(find_seeds(slow.spacepoints)) == 0
    fast = make_event(_one(2000.0, eta, 10.0), rng)
    assert len(find_seeds(fast.spacepoints)) > 0


def test_seed_quality_ranks_by_impact_and_slope():
    """Default quality = -(|d0| + (delta cot / allowance)^2): a clean track's seeds sit near 0
    and never below -(impact_max + 1); the ACTS compatible-top bonus is still available."""
    event = make_event(_one(5000.0, 0.4, 20.0), np.random.default_rng(6))
    seeds = find_seeds(event.spacepoints)
    assert len(seeds) > 0
    q = seeds["quality"]
    assert np.all(q <= 0.0)
    assert np.all(q >= -(SeedingConfig().impact_max + 1.0))
    assert q.max() > -0.5
    # a confirming top lies on another layer than the seed's top: ACTS' deltaR range
    # (270 mm) reaches two layers beyond the middle, the default 80 mm only the next one
    acts = SeedingConfig(compat_seed_weight=200.0, slope_weight_factor=0.0,
                         min_compatible_tops=1, delta_r_top_max=270.0)
    confirmed = find_seeds(event.spacepoints, acts)
    assert len(confirmed) > 0
    assert np.all(confirmed["quality"] >= 200.0 - acts.impact_max)


def test_min_pt_is_configurable():
    event = make_event(_one(300.0, 0.3, 0.0), np.random.default_rng(4))
    assert len(find_seeds(event.spacepoints, SeedingConfig(min_pt=250.0))) > 0


def test_vertex_outside_collision_region_gives_no_seed():
    rng = np.random.default_rng(5)
    outside = make_event(_one(5000.0, 0.2, 300.0), rng)
    assert len(outside.spacepoints) >= 3
    assert len(find_seeds(outside.spacepoints)) == 0
    inside = make_event(_one(5000.0, 0.2, 180.0), rng)
    seeds = find_seeds(inside.spacepoints)
    assert len(seeds) > 0
    assert abs(seeds["z_vertex"][0] - 180.0) < 1.0
    wide = SeedingConfig(collision_region_min=-350.0, collision_region_max=350.0)
    assert len(find_seeds(outside.spacepoints, wide)) > 0


def test_large_impact_parameter_gives_no_seed():
    # a straight line at 10 mm from the beam line: x = 10 mm, y from the layers' radii
    radii = np.array([32.0, 72.0, 116.0, 172.0])
    xyz = np.stack([np.full(4, 10.0), np.sqrt(radii**2 - 100.0), 0.3 * radii], axis=1)
    assert len(find_seeds(_spacepoints(xyz))) == 0
    assert len(find_seeds(_spacepoints(xyz), SeedingConfig(impact_max=12.0))) > 0


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_spacepoints(n):
    xyz = np.array([[32.0, 0.0, 1.0], [72.0, 0.0, 2.0]])[:n]
    seeds = find_seeds(_spacepoints(xyz))
    assert isinstance(seeds, Seeds)
    assert len(seeds) == 0


def test_identical_positions():
    assert len(find_seeds(_spacepoints(np.tile([50.0, 20.0, 30.0], (10, 1))))) == 0
    assert len(find_seeds(_spacepoints(np.zeros((5, 3))))) == 0


@pytest.mark.parametrize("column", [0, 1, 2])
def test_nan_position_raises(column):
    xyz = np.array([[32.0, 0.0, 1.0], [72.0, 0.1, 2.0], [116.0, 0.2, 3.0]])
    xyz[1, column] = np.nan
    with pytest.raises(InputError, match="not finite"):
        find_seeds(_spacepoints(xyz))
