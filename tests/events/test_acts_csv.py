"""ACTS CSV reader/writer: truth consistency, geometry consistency, round trip, bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from taas.detector.detector import Detector
from taas.errors import InputError
from taas.events.acts_csv import (
    BARCODE_FIELDS,
    pack_particle_id,
    read_acts_event,
    unpack_particle_id,
    write_acts_event,
)
from taas.events.event import Event

STEM = "event000000000"


@pytest.fixture(scope="module")
def tiny_event(tiny_sim_dir: Path, generic_detector: Detector) -> Event:
    return read_acts_event(tiny_sim_dir, 0, generic_detector)


@pytest.fixture
def event_copy(tiny_sim_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of event 0's files."""
    for path in tiny_sim_dir.glob(f"{STEM}-*.csv"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_reads_event(tiny_event: Event) -> None:
    assert tiny_event.source == "acts-csv"
    sizes = tiny_event.sizes()
    assert sizes["cells"] > sizes["hits"] > 0
    assert sizes["particles"] == 50


def test_truth_links(tiny_event: Event, tiny_sim_dir: Path) -> None:
    hits, particles = tiny_event.hits, tiny_event.particles
    # every measurement maps to a simulated hit, every hit to a known particle
    assert np.all(hits["particle_id"] != 0)
    assert np.all(np.isfinite(hits["tx"]))
    assert np.isin(hits["particle_id"], particles["particle_id"]).all()
    n_measurements = len((tiny_sim_dir / f"{STEM}-measurements.csv").read_text().splitlines()) - 1
    assert len(hits) == n_measurements
    assert np.array_equal(hits["hit_id"], np.arange(len(hits)))
    ids, _counts = np.unique(hits["particle_id"], return_counts=True)
    order = np.argsort(particles["particle_id"])
    assert np.array_equal(particles["particle_id"][order][particles["nhits"][order] > 0], ids)
    assert particles["nhits"].sum() == len(hits)
    assert np.all(hits["weight"] == 0)


def test_cells_for_every_measurement_and_in_grid(tiny_event: Event) -> None:
    det, cells, hits = tiny_event.detector, tiny_event.cells, tiny_event.hits
    assert np.isin(hits["hit_id"], cells["hit_id"]).all()
    assert np.isin(cells["hit_id"], hits["hit_id"]).all()
    rows = det.index_of(cells["module_key"])
    assert det.channel_in_range(rows, cells["ch0"], cells["ch1"]).all()
    assert np.all(cells["value"] > 0)
    # cells sit on the module of their measurement
    by_id = np.argsort(hits["hit_id"])
    pos = by_id[np.searchsorted(hits["hit_id"], cells["hit_id"], sorter=by_id)]
    assert np.array_equal(hits["module_key"][pos], cells["module_key"])


def test_true_hits_on_module_and_near_reference(tiny_event: Event) -> None:
    det, hits = tiny_event.detector, tiny_event.hits
    rows = det.index_of(hits["module_key"])
    local = det.global_to_local(rows, np.stack([hits["tx"], hits["ty"], hits["tz"]], axis=1))
    m = det.modules
    assert np.all(np.abs(local[:, 2]) <= m["thickness"][rows] / 2 + 1e-3)
    assert det.inside_bounds(rows, local[:, 0], local[:, 1], tolerance=1e-3).all()
    du = np.abs(hits["ref_u"] - local[:, 0]) / m["pitch_u"][rows]
    dv = np.abs(hits["ref_v"] - local[:, 1]) / m["pitch_v"][rows]
    assert du.max() < 4
    assert dv.max() < 4
    assert np.median(du) < 0.5
    assert np.median(dv) < 0.5
    # the true position's channel is one of the measurement's cells, mostly
    ch0, ch1 = det.local_to_channel(rows, local[:, 0], local[:, 1])
    assert det.channel_in_range(rows, ch0, ch1).all()


@pytest.mark.parametrize("event_id", [0, 1])
def test_round_trip_is_lossless(tiny_sim_dir: Path, generic_detector: Detector,
                                tmp_path: Path, event_id: int) -> None:
    event = read_acts_event(tiny_sim_dir, event_id, generic_detector)
    written = write_acts_event(event, tmp_path)
    assert {p.name.split("-", 1)[1] for p in written} == {
        "cells.csv", "measurements.csv", "measurement-simhit-map.csv", "hits.csv",
        "particles.csv"}
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left
    back = read_acts_event(tmp_path, event_id, generic_detector)
    assert back.equals(event)
    # and once more: the writer's output is a fixed point
    again = tmp_path / "again"
    write_acts_event(back, again)
    for path in written:
        assert (again / path.name).read_bytes() == path.read_bytes()


def test_written_headers_are_traccc_layout(tiny_event: Event, tmp_path: Path) -> None:
    write_acts_event(tiny_event, tmp_path)
    header = {p.name.split("-", 1)[1]: p.read_text().split("\n", 1)[0].split(",")
              for p in tmp_path.glob(f"{STEM}-*.csv")}
    assert header["cells.csv"] == ["geometry_id", "measurement_id", "channel0", "channel1",
                                   "timestamp", "value"]
    assert header["measurements.csv"][:13] == [
        "measurement_id", "geometry_id", "local_key", "local0", "local1", "phi", "theta",
        "time", "var_local0", "var_local1", "var_phi", "var_theta", "var_time"]
    assert header["hits.csv"][:15] == [
        "particle_id", "geometry_id", "tx", "ty", "tz", "tt", "tpx", "tpy", "tpz", "te",
        "deltapx", "deltapy", "deltapz", "deltae", "index"]
    assert header["particles.csv"][:12] == [
        "particle_id", "particle_type", "process", "vx", "vy", "vz", "vt", "px", "py", "pz",
        "m", "q"]
    assert header["measurement-simhit-map.csv"] == ["measurement_id", "hit_id"]


def test_reads_gzipped_files(event_copy: Path, tiny_event: Event) -> None:
    for path in list(event_copy.glob(f"{STEM}-*.csv")):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    assert read_acts_event(event_copy, 0, tiny_event.detector).equals(tiny_event)


def test_particle_id_packing() -> None:
    parts = {"particle_id_pv": [1, 4095], "particle_id_sv": [0, 4095],
             "particle_id_part": [7, 65535], "particle_id_gen": [0, 255],
             "particle_id_subpart": [0, 65535]}
    packed = pack_particle_id(parts)
    assert packed[0] == (1 << 52) | (7 << 24)
    assert packed[1] == 2**64 - 1
    back = unpack_particle_id(packed)
    for name, _ in BARCODE_FIELDS:
        assert list(back[name]) == parts[name]
    with pytest.raises(InputError) as info:
        pack_particle_id({**parts, "particle_id_gen": [0, 256]}, source="x.csv")
    assert (info.value.row, info.value.column) == (1, "particle_id_gen")


# --- bad input ---------------------------------------------------------------------------

def _edit(path: Path, row: int, column: str, value: str) -> None:
    """Set one value (0-based data row) of a CSV file."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[row + 1].split(",")
    fields[header.index(column)] = value
    lines[row + 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def _read_error(directory: Path, detector: Detector) -> InputError:
    with pytest.raises(InputError) as info:
        read_acts_event(directory, 0, detector)
    return info.value


def test_missing_file(event_copy: Path, generic_detector: Detector) -> None:
    (event_copy / f"{STEM}-hits.csv").unlink()
    err = _read_error(event_copy, generic_detector)
    assert f"{STEM}-hits.csv" in str(err)


def test_missing_column(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-cells.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n")
    err = _read_error(event_copy, generic_detector)
    assert err.path == str(path)
    assert err.column == "value"


def test_renamed_column(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-cells.csv"
    text = path.read_text()
    path.write_text(text.replace("channel0", "channelA", 1))
    err = _read_error(event_copy, generic_detector)
    assert err.path == str(path)
    assert err.column == "channel0"
    assert "channelA" in str(err)


def test_string_in_numeric_column(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-measurements.csv"
    _edit(path, 3, "local0", "oops")
    err = _read_error(event_copy, generic_detector)
    assert (err.path, err.row, err.column) == (str(path), 3, "local0")
    assert f"{STEM}-measurements.csv" in str(err)
    assert "row 3" in str(err)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite(event_copy: Path, generic_detector: Detector, value: str) -> None:
    path = event_copy / f"{STEM}-hits.csv"
    _edit(path, 5, "tz", value)
    err = _read_error(event_copy, generic_detector)
    assert (err.path, err.row, err.column) == (str(path), 5, "tz")


def test_truncated_gzip(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-cells.csv"
    data = gzip.compress(path.read_bytes())
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(data[: len(data) // 2])
    path.unlink()
    err = _read_error(event_copy, generic_detector)
    assert err.path == str(gz)


def test_unknown_geometry_id(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-cells.csv"
    _edit(path, 7, "geometry_id", "12345")
    err = _read_error(event_copy, generic_detector)
    assert (err.path, err.row, err.column) == (str(path), 7, "geometry_id")
    assert "12345" in str(err)


def test_dangling_simhit_link(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-measurement-simhit-map.csv"
    _edit(path, 2, "hit_id", "999999")
    err = _read_error(event_copy, generic_detector)
    assert (err.path, err.row, err.column) == (str(path), 2, "hit_id")


@pytest.mark.parametrize(("column", "value"), [("channel0", "100000"), ("channel1", "-1")])
def test_channel_outside_segmentation(event_copy: Path, generic_detector: Detector,
                                      column: str, value: str) -> None:
    path = event_copy / f"{STEM}-cells.csv"
    _edit(path, 4, column, value)
    err = _read_error(event_copy, generic_detector)
    assert (err.path, err.row, err.column) == (str(path), 4, column)
    assert "readout grid" in str(err)


def test_empty_event(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-cells.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    err = _read_error(event_copy, generic_detector)
    assert err.path == str(path)
    assert "empty event" in str(err)


def test_empty_file(event_copy: Path, generic_detector: Detector) -> None:
    path = event_copy / f"{STEM}-particles_simulated.csv"
    if not path.exists():
        path = event_copy / f"{STEM}-particles.csv"
    path.write_text("")
    err = _read_error(event_copy, generic_detector)
    assert err.path == str(path)
    assert "empty file" in str(err)
