"""Export for real traccc: the files read back by taas' own ACTS/traccc reader give the same
event, and the geometry file is what ACTS' own ``CsvTrackingGeometryWriter`` writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from taas.errors import InputError
from taas.events.acts_csv import read_acts_event
from taas.events.dataset import open_dataset
from traccc_bridge.export import (
    BOUNDS_RECTANGLE,
    BOUNDS_TRAPEZOID,
    DETECTOR_FILE,
    DIGITIZATION_FILE,
    GEOMETRY_HEADER,
    export_events,
)


@pytest.fixture(scope="module")
def exported(tiny_sim_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return export_events(tiny_sim_dir, tmp_path_factory.mktemp("traccc_data"))


def test_cells_and_truth_read_back_identical(tiny_sim_dir: Path, exported) -> None:
    dataset = open_dataset(tiny_sim_dir)
    assert exported.event_ids == tuple(dataset.event_ids)
    events_dir = exported.data_dir / exported.events_dir
    for event_id in dataset.event_ids:
        original = dataset.read(event_id)
        back = read_acts_event(events_dir, event_id, dataset.detector)
        for name, table in (("cells", original.cells), ("hits", original.hits),
                            ("particles", original.particles)):
            again = getattr(back, name)
            assert len(again) == len(table) > 0, name
            for column, values in table.columns().items():
                np.testing.assert_array_equal(again[column], values,
                                              err_msg=f"{name}.{column}")


def test_measurement_key_is_the_raw_byte_acts_writes(exported) -> None:
    path = exported.data_dir / exported.events_dir / "event000000000-measurements.csv"
    with path.open(newline="") as f:
        row = next(csv.DictReader(f))
    assert row["local_key"] == chr(6)  # bits 1, 2: (loc0, loc1); the text "6" reads as 54


def test_geometry_file_covers_every_module(exported, tiny_sim_dir: Path) -> None:
    detector = open_dataset(tiny_sim_dir).detector
    with (exported.data_dir / DETECTOR_FILE).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == GEOMETRY_HEADER
    assert len(rows) == len(detector)
    ids = np.array([int(r["geometry_id"]) for r in rows], np.uint64)
    np.testing.assert_array_equal(np.sort(ids), np.sort(detector.modules["module_key"]))
    kinds = {int(r["bounds_type"]) for r in rows}
    assert kinds == {BOUNDS_RECTANGLE, BOUNDS_TRAPEZOID}


def test_geometry_file_matches_acts_writer(exported, tmp_path: Path) -> None:
    """Sensitive surfaces as ACTS' ``CsvTrackingGeometryWriter`` writes them (float32 there)."""
    acts = pytest.importorskip("acts")
    import acts.examples as ex

    from taas.detector.acts_generic import generic_tracking_geometry

    _, geometry = generic_tracking_geometry()
    seq = ex.Sequencer(events=1, numThreads=1, logLevel=acts.logging.WARNING,
                       outputDir=str(tmp_path))
    seq.addWriter(ex.CsvTrackingGeometryWriter(level=acts.logging.WARNING,
                                               trackingGeometry=geometry,
                                               outputDir=str(tmp_path), writePerEvent=False))
    seq.run()

    def table(path: Path) -> dict[int, dict[str, str]]:
        with path.open(newline="") as f:
            return {int(r["geometry_id"]): r for r in csv.DictReader(f)
                    if int(r["module_id"]) != 0}

    ours, theirs = table(exported.data_dir / DETECTOR_FILE), table(tmp_path / "detectors.csv")
    assert ours.keys() == theirs.keys()
    exact = ("volume_id", "boundary_id", "layer_id", "module_id", "extra_id", "bounds_type")
    close = [c for c in GEOMETRY_HEADER[6:] if c not in (*exact, "pitch_u", "pitch_v")]
    for key, row in theirs.items():
        mine = ours[key]
        assert all(int(mine[c]) == int(row[c]) for c in exact), key
        np.testing.assert_allclose([float(mine[c]) for c in close],
                                   [float(row[c]) for c in close], rtol=1e-6, atol=2e-5,
                                   err_msg=str(key))


def test_digitization_file_holds_the_segmentation(exported, tiny_sim_dir: Path) -> None:
    doc = json.loads((exported.data_dir / DIGITIZATION_FILE).read_text())
    assert doc["acts-geometry-hierarchy-map"]["value-identifier"] == "digitization-configuration"
    detector = open_dataset(tiny_sim_dir).detector
    first = doc["entries"][0]
    rows = np.flatnonzero((detector.modules["volume_id"] == first["volume"])
                          & (detector.modules["layer_id"] == first["layer"]))
    bins = [axis["bins"] for axis in first["value"]["geometric"]["segmentation"]["binningdata"]]
    assert (bins[0], bins[1]) in set(zip(detector.modules["n_u"][rows].tolist(),
                                         detector.modules["n_v"][rows].tolist(), strict=True))


def test_command_points_at_the_written_files(exported) -> None:
    cmd = exported.command("traccc_seq_example", "--check-performance")
    assert cmd[0] == "traccc_seq_example"
    assert cmd[-1] == "--check-performance"
    data = Path(exported.environment()["TRACCC_TEST_DATA_DIR"])
    for option in cmd[1:3]:
        assert (data / option.split("=", 1)[1]).is_file(), option
    assert f"--input-events={len(exported.event_ids)}" in cmd
    assert (data / exported.events_dir / "event000000001-cells.csv").is_file()


def test_unknown_events_and_outside_dirs_are_refused(tiny_sim_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not in the dataset"):
        export_events(tiny_sim_dir, tmp_path, event_ids=[0, 5])
    with pytest.raises(InputError, match="relative path"):
        export_events(tiny_sim_dir, tmp_path, events_dir="../elsewhere")
