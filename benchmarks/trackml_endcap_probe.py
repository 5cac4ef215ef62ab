"""Which cell-level difference costs the GNN the pixel end caps of the real TrackML event?

Run: ``.venv/bin/python benchmarks/trackml_endcap_probe.py [--trackml DIR]``.
Writes ``benchmarks/results/trackml_endcap_probe.json``.

On the real TrackML event (``../shared/data/trackml``: 5.5k hits, 36 fiducial particles with
pT > 1 GeV) the ``acorn`` pipeline with the ``binary_strips`` models finds 28/36 (77.8%) with
34% fakes; its GNN keeps 85% of the pT > 1 GeV truth edges there against 96.5% on simulated
binary-strip events, and loses most in the pixel end caps (volumes 7 and 9).
``benchmarks/trackml_real_data.py`` found two feature differences in those volumes: the real
cell values are larger (median 0.168 / 0.181 against the simulation's 0.100 / 0.111; the pixel
barrel, volume 8, matches: 0.055 against 0.050), and TrackML's pixels have a 0.05625 mm v pitch
where taas' Generic detector has 0.05 mm, so the ``extent_v`` feature (``size_v * pitch_v``,
``taas.reco.cluster_features.shape_features``, the pitch from the detector's module table) and
every direction feature built from it (``local_angle``, ``local_eta``, ``global_eta``,
``global_phi``) read 12.5% longer per cell.

This probe runs the same pipeline and the same models on transformations of the real event's
cells (never of the models), each removing one difference, and sees what comes back:

* ``as_is``: the event unchanged (the baseline: 28/36);
* ``endcap_values``: cells in volumes 7 and 9 scaled by the simulation/real ratio of that
  volume's median cell value, the medians recorded in ``results/trackml_real_data.json``
  (real event against one ``small`` event simulated with seed 11; no event is simulated here);
* ``endcap_pitch``: the end caps read with the simulation's 0.05 mm v pitch. A pitch is not a
  cell property, so the module table of volumes 7 and 9 gets ``pitch_v`` 0.05 mm (1440 channels
  over the same 72 mm) and every cluster there moves on the finer grid as a rigid block: same
  cell pattern (so the same ``size_v``, now ``size_v * 0.05`` mm as ``extent_v``), its ch1
  shifted by the whole number of channels that puts its charge-weighted centroid nearest its
  real position (within 0.025 mm; the shifts, moves and any clusters that merged are recorded);
* ``endcap_values_and_pitch``: both;
* ``pixel_values``: every pixel volume (7, 8, 9) scaled by its own median ratio;
* ``pixel_values_endcap_pitch``: ``pixel_values`` and ``endcap_pitch``;
* ``endcap_cluster_charge``: the end caps scaled instead by the ratio of the median *cluster*
  charge feature (pT > 1 GeV space points, ``trackml_real_data.json``'s ``features``): the
  cell-median ratio leaves the cluster charge above the simulation's;
* ``no_forward_particles``: a truth cut, not a detector effect: the cells of every particle
  with |eta| >= 2.5 removed. taas' particle gun makes only |eta| < 2.5, so the models never
  saw the very forward tracks that cross the pixel disks at small radius, where the inner
  ring's rectangular modules overlap up to three-fold in phi and a particle leaves two or three
  space points on one disk.

Per condition: two_way efficiency, fake and duplicate rates (fiducial pT > 1 GeV, |eta| < 2.5,
primary; Clopper-Pearson 68.3% errors), tracks, the efficiency among fiducial particles with
and without pixel end-cap measurements, the pT > 1 GeV truth-edge efficiency after the filter
and after the GNN (score > 0.3) overall, per volume-pair class, per pixel volume touched and
for end-cap edges within one disk or between disks, each for all particles and split at
|eta| = 2.5 (the simulation's gun), and the median node features of pT > 1 GeV space points
per pixel volume (the simulation's medians from ``trackml_real_data.json`` beside them).
Machine time is not measured here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from binary_strips import first_event
from scaling_runs import RESULTS, write_result
from trackml_real_data import TARGET_PT, edge_counts, particle_pt, rates, volumes_of

from taas.detector.acts_generic import STRIP_VOLUMES
from taas.detector.detector import Detector
from taas.detector.modules import Modules
from taas.edm.hits import Cells
from taas.events.event import Event
from taas.gnn.data import GraphSample, build_sample, front_end
from taas.gnn.features import NODE_FEATURE_NAMES
from taas.gnn.training.graphs import pair_keys
from taas.metrics.rates import binomial_rate
from taas.pipeline.evaluation import evaluate_reco
from taas.pipeline.reconstruct import event_inputs, with_model_set
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PIPELINES

ROOT = Path(__file__).resolve().parents[1]
MODEL_SET = "binary_strips"
PIPELINE = "acorn"
GNN_CUT = 0.3
PIXEL_ENDCAPS = (7, 9)
PIXEL_BARREL = (8,)
PIXEL_VOLUMES = (7, 8, 9)
#: taas' Generic-detector pixel pitch (``taas.detector.acts_generic.SEGMENTATION``).
SIM_PITCH_V = 0.05
#: The simulation's particle gun: |eta| < 2.5 (``taas.events.simulation``).
SIM_ETA_MAX = 2.5
FEATURES = ("charge", "n_cells", "extent_u", "extent_v", "local_angle", "local_eta",
            "global_eta", "global_phi")


def recorded(path: Path) -> dict[str, dict[int, float]]:
    """Simulation/real ratios per pixel volume from ``trackml_real_data.json``: of the median
    cell value (``cell``) and of the median cluster charge feature of pT > 1 GeV space points
    (``cluster_charge``), and the simulation's median features (``sim_features``)."""
    data = json.loads(path.read_text())
    real, sim = data["trackml"], data["simulation"]
    out: dict[str, Any] = {"cell": {}, "cluster_charge": {}, "real_cell_median": {},
                           "sim_cell_median": {}}
    for v in PIXEL_VOLUMES:
        key = str(v)
        out["real_cell_median"][v] = real["cell_values"][key]["median"]
        out["sim_cell_median"][v] = sim["cell_values"][key]["median"]
        out["cell"][v] = sim["cell_values"][key]["median"] / real["cell_values"][key]["median"]
        out["cluster_charge"][v] = (sim["features"][key]["charge"]
                                    / real["features"][key]["charge"])
    out["sim_features"] = {str(v): sim["features"][str(v)] for v in PIXEL_VOLUMES}
    return out


def with_cells(event: Event, columns: dict[str, np.ndarray],
               detector: Detector | None = None) -> Event:
    return Event(event.event_id, cells=Cells(columns), hits=event.hits,
                 particles=event.particles, detector=detector or event.detector,
                 source=event.source)


def scaled(event: Event, ratios: dict[int, float]) -> Event:
    """``event`` with the cell values of each volume in ``ratios`` multiplied by its ratio."""
    vol = volumes_of(event, event.cells["module_key"])
    value = event.cells["value"].astype(np.float64)
    for v, ratio in ratios.items():
        value[vol == v] *= ratio
    columns = event.cells.columns()
    columns["value"] = value.astype(np.float32)
    return with_cells(event, columns)


def without_forward(event: Event, eta_max: float) -> tuple[Event, dict[str, Any]]:
    """``event`` without the cells of hits whose particle has |eta| >= ``eta_max`` (a truth
    cut: what the simulation's particle gun never makes); noise cells stay."""
    hit_ids = event.hits["hit_id"]
    order = np.argsort(hit_ids)
    rows = order[np.minimum(np.searchsorted(hit_ids[order], event.cells["hit_id"]),
                            len(order) - 1)]
    known = hit_ids[rows] == event.cells["hit_id"]
    particle = np.where(known, event.hits["particle_id"][rows], 0).astype(np.uint64)
    forward = (particle > 0) & (particle_abs_eta(event, particle) >= eta_max)
    columns = {k: a[~forward] for k, a in event.cells.columns().items()}
    vol = volumes_of(event, event.cells["module_key"])
    return with_cells(event, columns), {
        "abs_eta_cut": eta_max, "cells_removed": int(forward.sum()),
        "cells_removed_pixel_endcaps": int((forward & np.isin(vol, PIXEL_ENDCAPS)).sum()),
        "particles_removed": len(np.unique(particle[forward]))}


def finer_pitch(detector: Detector, volumes: tuple[int, ...], pitch_v: float) -> Detector:
    """A copy of ``detector`` whose modules in ``volumes`` have ``pitch_v`` (and the channel
    count that covers the same 2 hv with it); field and material carried over."""
    columns = {k: np.array(a, copy=True) for k, a in detector.modules.columns().items()}
    sel = np.isin(columns["volume_id"], volumes)
    n_v = np.rint(2 * columns["hv"][sel] / pitch_v).astype(columns["n_v"].dtype)
    columns["n_v"][sel] = n_v
    columns["pitch_v"][sel] = 2 * columns["hv"][sel] / n_v
    out = Detector(Modules(columns), name=f"{detector.name}+pitch_v{pitch_v:g}")
    out.field = detector.field
    out.material = detector.material
    return out


def sim_pitch(event: Event, volumes: tuple[int, ...]) -> tuple[Event, dict[str, Any]]:
    """``event`` read with ``SIM_PITCH_V`` in ``volumes``: each cluster there shifted in ch1 as
    a block so that its centroid lands nearest its real local v (see the module docstring)."""
    old = front_end(event)
    det = event.detector
    new_det = finer_pitch(det, volumes, SIM_PITCH_V)
    cluster = old["clusters.cluster_id"]
    meas_rows = det.index_of(old["measurements.module_key"])
    in_vol = np.isin(det.modules["volume_id"][meas_rows], volumes)
    hv = det.modules["hv"][meas_rows]
    p_old = det.modules["pitch_v"][meas_rows]
    p_new = new_det.modules["pitch_v"][new_det.index_of(old["measurements.module_key"])]
    # centroid channel c: v = -hv + (c + 0.5) p; keep v, so c' + 0.5 = (v + hv) / p_new
    edge = old["measurements.local_v"] + hv
    shift = np.where(in_vol, np.rint(edge / p_new - edge / p_old), 0).astype(np.int64)
    columns = event.cells.columns()
    ch1 = columns["ch1"].astype(np.int64) + shift[cluster]
    n_v = new_det.modules["n_v"][new_det.index_of(columns["module_key"])]
    if ch1.min() < 0 or np.any(ch1 >= n_v):
        raise SystemExit("sim_pitch: a shifted cluster left its module")
    columns["ch1"] = ch1.astype(columns["ch1"].dtype)
    moved = with_cells(event, columns, new_det)
    new = front_end(moved)
    cells = np.isin(volumes_of(event, columns["module_key"]), volumes)
    dv = (new["measurements.local_v"][new["clusters.cluster_id"][cells]]
          - old["measurements.local_v"][cluster[cells]])
    info = {"volumes": list(volumes), "pitch_v_mm": SIM_PITCH_V,
            "clusters": int(in_vol.sum()),
            "clusters_after": len(np.unique(new["clusters.cluster_id"][cells])),
            "median_shift_channels": float(np.median(shift[in_vol])),
            "centroid_move_mm": {"median_abs": float(np.median(np.abs(dv))),
                                 "max_abs": float(np.max(np.abs(dv)))}}
    return moved, info


def pair_class(va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Volume-pair class of each edge from its endpoints' volumes."""
    end_a, end_b = np.isin(va, PIXEL_ENDCAPS), np.isin(vb, PIXEL_ENDCAPS)
    bar_a, bar_b = np.isin(va, PIXEL_BARREL), np.isin(vb, PIXEL_BARREL)
    strip_a, strip_b = np.isin(va, STRIP_VOLUMES), np.isin(vb, STRIP_VOLUMES)
    out = np.full(len(va), "other", dtype=object)
    out[end_a & end_b] = "pixel_endcap"
    out[bar_a & bar_b] = "pixel_barrel"
    out[(end_a & bar_b) | (bar_a & end_b)] = "pixel_barrel_to_endcap"
    out[((end_a | bar_a) & strip_b) | (strip_a & (end_b | bar_b))] = "pixel_to_strip"
    out[strip_a & strip_b] = "strips"
    return out


def particle_abs_eta(event: Event, particle: np.ndarray) -> np.ndarray:
    """|eta| of each entry's particle (inf for noise and unknown particles)."""
    ids = np.asarray(event.particles["particle_id"], np.uint64)
    eta = np.abs(event.particles.eta)
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], particle), 0, max(len(ids) - 1, 0))
    found = ids[order][pos] == particle
    return np.where(found, eta[order][pos], np.inf)


def edge_classes(event: Event, sample: GraphSample, reco: dict[str, np.ndarray]
                 ) -> dict[str, Any]:
    """pT > 1 GeV truth-edge efficiency after the filter and after the GNN, per volume-pair
    class, per pixel volume touched (either end in it), and for end-cap edges within one disk
    (``same_disk``: the particle crossed overlapping modules of one layer) or between disks;
    for all such particles and split at the simulation's |eta| = 2.5."""
    n = sample.n_nodes
    target = sample.truth_pt() > TARGET_PT
    t_src, t_dst = sample.truth_src[target], sample.truth_dst[target]
    tkeys = pair_keys(t_src, t_dst, n)
    det = event.detector
    rows = det.index_of(sample.module)
    vol, layer = det.modules["volume_id"][rows], det.modules["layer_id"][rows]
    classes = pair_class(vol[t_src], vol[t_dst])
    same_layer = (vol[t_src] == vol[t_dst]) & (layer[t_src] == layer[t_dst])
    groups: dict[str, np.ndarray] = {"all": np.ones(len(tkeys), bool)}
    groups |= {c: classes == c for c in (
        "pixel_endcap", "pixel_barrel", "pixel_barrel_to_endcap", "pixel_to_strip", "strips")}
    groups["pixel_endcap_same_disk"] = groups["pixel_endcap"] & same_layer
    groups["pixel_endcap_between_disks"] = groups["pixel_endcap"] & ~same_layer
    groups |= {f"touching_volume_{v}": (vol[t_src] == v) | (vol[t_dst] == v)
               for v in PIXEL_VOLUMES}
    found = {}
    for name, cut in (("filter", None), ("gnn", GNN_CUT)):
        src, dst = reco["edges.src"], reco["edges.dst"]
        if cut is not None:
            keep = reco["edges.score"] > cut
            src, dst = src[keep], dst[keep]
        found[name] = np.isin(tkeys, pair_keys(src, dst, n))
    central = particle_abs_eta(event, sample.truth_particle[target]) < SIM_ETA_MAX
    out: dict[str, Any] = {}
    for label, particles in (("all_particles", np.ones(len(tkeys), bool)),
                             (f"abs_eta_lt_{SIM_ETA_MAX:g}", central),
                             (f"abs_eta_ge_{SIM_ETA_MAX:g}", ~central)):
        out[label] = {name: {"truth_edges": int((sel & particles).sum()), **{
            f"{stage}_efficiency": float(hit[sel & particles].mean())
            if (sel & particles).any() else None for stage, hit in found.items()}}
            for name, sel in groups.items()}
    return out


def node_features(event: Event, sample: GraphSample) -> dict[str, dict[str, float]]:
    """Median node features (as the models read them) of pT > 1 GeV space points per pixel
    volume."""
    vol = volumes_of(event, sample.module)
    pt = particle_pt(sample.particle, sample.particle_ids, sample.particle_pt)
    out = {}
    for v in PIXEL_VOLUMES:
        sel = (vol == v) & (pt > TARGET_PT)
        out[str(v)] = {"spacepoints": int(sel.sum()), **{
            name: float(np.median(sample.x[sel, NODE_FEATURE_NAMES.index(name)]))
            for name in FEATURES}}
    return out


def endcap_split(summary: dict[str, Any], sample: GraphSample, event: Event
                 ) -> dict[str, Any]:
    """Efficiency among fiducial particles with at least one pixel end-cap space point, and
    among the others; the fiducial particles not reconstructed."""
    vol = volumes_of(event, sample.module)
    on_endcap = np.unique(sample.particle[np.isin(vol, PIXEL_ENDCAPS)])
    p = summary["particles"]
    fid = np.asarray(p["fiducial"], bool)
    reco = np.asarray(p["reconstructed"], bool)
    ids = np.asarray(p["particle_id"], np.uint64)
    has = np.isin(ids, on_endcap)
    out: dict[str, Any] = {}
    for name, sel in (("with_endcap_spacepoints", fid & has),
                      ("without_endcap_spacepoints", fid & ~has)):
        out[name] = binomial_rate(int((reco & sel).sum()), int(sel.sum())).to_dict()
    out["lost_particle_ids"] = [int(i) for i in ids[fid & ~reco]]
    return out


def run(event: Event, spec: Any) -> dict[str, Any]:
    reco = Pipeline(spec, event.detector).run(event_inputs(event)).tensors
    summary = evaluate_reco(event, reco)
    sample = build_sample(event, front_end(event))
    counts = summary["counts"]
    return {**rates(summary), "tracks": counts["n_tracks"],
            "reconstructed": counts["n_reconstructed_particles"],
            "fiducial_particles": counts["n_fiducial_particles"],
            "trackml_score": summary.get("trackml_score"),
            "endcap_split": endcap_split(summary, sample, event),
            **edge_counts(event, reco),
            "edge_efficiency_by_class": edge_classes(event, sample, reco),
            "node_feature_medians_pt_gt_1": node_features(event, sample)}


def conditions(event: Event, ratios: dict[str, Any]
               ) -> dict[str, tuple[str, Callable[[], tuple[Event, dict[str, Any]]]]]:
    cell = ratios["cell"]
    endcap = {v: cell[v] for v in PIXEL_ENDCAPS}
    pixels = {v: cell[v] for v in PIXEL_VOLUMES}
    charge = {v: ratios["cluster_charge"][v] for v in PIXEL_ENDCAPS}

    def values(r: dict[int, float]) -> Callable[[], tuple[Event, dict[str, Any]]]:
        return lambda: (scaled(event, r), {"value_scale": {str(k): v for k, v in r.items()}})

    def values_and_pitch(r: dict[int, float]) -> Callable[[], tuple[Event, dict[str, Any]]]:
        def make() -> tuple[Event, dict[str, Any]]:
            moved, info = sim_pitch(scaled(event, r), PIXEL_ENDCAPS)
            return moved, {"value_scale": {str(k): v for k, v in r.items()}, "pitch": info}
        return make

    def pitch() -> tuple[Event, dict[str, Any]]:
        moved, info = sim_pitch(event, PIXEL_ENDCAPS)
        return moved, {"pitch": info}

    return {
        "as_is": ("the real event unchanged", lambda: (event, {})),
        "endcap_values": ("volumes 7, 9: cell values x sim/real median cell value",
                          values(endcap)),
        "endcap_pitch": ("volumes 7, 9: read with 0.05 mm v pitch (clusters moved as blocks)",
                         pitch),
        "endcap_values_and_pitch": ("endcap_values and endcap_pitch", values_and_pitch(endcap)),
        "pixel_values": ("volumes 7, 8, 9: cell values x sim/real median cell value per volume",
                         values(pixels)),
        "pixel_values_endcap_pitch": ("pixel_values and endcap_pitch", values_and_pitch(pixels)),
        "endcap_cluster_charge": ("volumes 7, 9: cell values x sim/real median cluster charge "
                                  "(pT > 1 GeV space points)", values(charge)),
        "no_forward_particles": (f"cells of particles with |eta| >= {SIM_ETA_MAX:g} removed "
                                 "(truth cut; the simulation has none)",
                                 lambda: without_forward(event, SIM_ETA_MAX)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackml", type=Path, default=ROOT.parent / "shared" / "data" / "trackml")
    parser.add_argument("--recorded", type=Path, default=RESULTS / "trackml_real_data.json",
                        help="trackml_real_data.py's output: the simulation's medians")
    parser.add_argument("--out", default="trackml_endcap_probe.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    event = first_event(args.trackml)
    ratios = recorded(args.recorded)
    spec = with_model_set(PIPELINES[PIPELINE], MODEL_SET)
    result: dict[str, Any] = {
        "benchmark": "trackml_endcap_probe", "pipeline": PIPELINE, "model_set": MODEL_SET,
        "event": {"path": str(args.trackml), "event_id": int(event.event_id), **event.sizes()},
        "matching": f"two_way, fiducial pT > {TARGET_PT:g} GeV, |eta| < 2.5, primary; "
                    "Clopper-Pearson 68.3% errors",
        "edge_efficiency": f"truth edges of particles with pT > {TARGET_PT:g} GeV kept after "
                           f"the filter and after the GNN (score > {GNN_CUT:g})",
        "ratios_source": f"medians recorded in {args.recorded.name} (real event vs one small "
                         "event simulated with seed 11); no event simulated here",
        "ratios": {k: {str(v): x for v, x in d.items()} for k, d in ratios.items()
                   if k != "sim_features"},
        "sim_node_feature_medians_pt_gt_1": ratios["sim_features"],
        "conditions": {}}
    for name, (description, make) in conditions(event, ratios).items():
        variant, transform = make()
        out = {"description": description, "transform": transform, **run(variant, spec)}
        result["conditions"][name] = out
        eff, by_class = out["efficiency"], out["edge_efficiency_by_class"]["all_particles"]
        gnn = {k: "n/a" if v["gnn_efficiency"] is None else f"{v['gnn_efficiency']:.3f}"
               for k, v in by_class.items()}
        print(f"{name:>26}: eff {out['reconstructed']}/{out['fiducial_particles']} "
              f"= {eff['value']:.3f} fake {out['fake_rate']['value']:.3f} tracks "
              f"{out['tracks']} | GNN edges {out['gnn_target_efficiency']:.3f} endcap "
              f"{gnn['pixel_endcap']} (same disk {gnn['pixel_endcap_same_disk']}) barrel "
              f"{gnn['pixel_barrel']}", flush=True)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
