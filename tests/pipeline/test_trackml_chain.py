"""The CPU pipeline on the real TrackML sample, evaluated with the TrackML score."""

from __future__ import annotations

import json

from taas.cli import main
from tests.trackml_data import TRACKML_DIR, needs_trackml


@needs_trackml
def test_cpu_chain_on_real_trackml_event(tmp_path, capsys):
    reco, metrics = tmp_path / "reco", tmp_path / "metrics"
    assert main(["reconstruct", "--events", str(TRACKML_DIR), "--out", str(reco), "-q"]) == 0
    assert main(["evaluate", "--events", str(TRACKML_DIR), "--tracks", str(reco),
                 "--out", str(metrics)]) == 0
    m = json.loads((metrics / "metrics.json").read_text())
    # 5% subsample: 36 fiducial particles (pT > 1 GeV, primary, >= 3 measurements)
    assert m["n_fiducial_particles"] == 36
    assert m["efficiency"] > 0.8
    assert m["fake_rate"] < 0.1
    # the score counts every particle (low pT ones are not seeded): a fraction of the sample's
    # total weight, well above what random assignment reaches (< 5% of it, see metrics tests)
    assert 0.2 * 0.051 < m["trackml_score"] <= 0.0511
    assert m["pulls"]["qop"]["pull_n"] > 20
    capsys.readouterr()
