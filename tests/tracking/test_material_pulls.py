"""Perigee pulls of fitted tracks on Fatras events: honest only with the detector's material.

Fatras scatters particles in the Generic detector's beam pipe, support tube and 1.5-3.5 mm
silicon layer slabs (``taas.detector.material``), and slows them down there. A fit that models
the module silicon alone had q/p, phi and theta pulls of width ~2-3 on these events; with the
material table they are ~1. (d0 and z0 pulls are left out: they are dominated by the
clustering's measurement variances, which are conservative for multi-pixel clusters.)
"""

from __future__ import annotations

import pytest

pytest.importorskip("acts")

#: Parameters checked and the accepted width68 of their pulls (tiny events: ~100 tracks).
CHECKED = ("phi", "theta", "qop")
#: The lower bound is loose: theta and q/p pulls come out ~0.7-0.8 on these events because
#: the pixel cluster variances are conservative (see the module docstring).
BOUNDS = (0.55, 1.35)


@pytest.fixture(scope="module")
def tiny_pulls(tiny_sim_dir, tmp_path_factory):
    from taas.pipeline.evaluation import evaluate_run
    from taas.pipeline.reconstruct import reconstruct
    from taas.pipeline.spec import CPU

    out = tmp_path_factory.mktemp("material_pulls")
    reconstruct(tiny_sim_dir, out / "reco", CPU, progress=False)
    return evaluate_run(tiny_sim_dir, out / "reco", out / "metrics")["pulls"]


@pytest.mark.parametrize("name", CHECKED)
def test_pull_widths_near_one(tiny_pulls, name):
    width = float(tiny_pulls[name]["pull_width68"])
    assert BOUNDS[0] <= width <= BOUNDS[1], f"{name} pull width68 {width:.2f}"
    assert int(tiny_pulls[name]["pull_n"]) >= 50
