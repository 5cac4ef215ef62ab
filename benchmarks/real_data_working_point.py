"""Edge-score working point and track-building settings of ``acorn`` on real and simulated data.

Run: ``.venv/bin/python benchmarks/real_data_working_point.py [--trackml DIR]``.
Writes ``benchmarks/results/real_data_working_point.json``.

Why: on the real TrackML event (``../shared/data/trackml``) the ``acorn`` pipeline with the
``binary_strips`` models finds 28 of 36 fiducial particles with 33.5% fake tracks that mix
hits of several particles, while the same models give 94.4% / 1.9% on a simulated binary-strip
``small`` event and the cpu chain 94.4% / 0 on the real one. This measures whether the merges
come from the working point of track building (the GNN edge-score cut and the algorithm's
options, ``taas.gnn.track_building.TrackBuildingConfig``) rather than from the GNN scores.

What: per event the front end, graph construction and edge classification run once (the
``acorn`` pipeline's first four stages, ``binary_strips`` models, as ``taas reconstruct`` picks
them for binary-strip events); then only track building and the track fit run again for each
setting of a scan:

* the score cut (0.3, the pipeline's, to 0.95) with the pipeline's walkthrough (``walk_min``
  follows the cut) and with plain connected components;
* at the pipeline's cut, one option changed at a time: ``method``, ``min_hits``, ``walk_min``,
  ``walk_add``, ``order_by``;
* a few higher cuts with shorter tracks allowed (``min_hits`` 5-6), and 0.5 with 10;
* each of these again with a selection after the fit, not a track-building setting: fitted
  tracks with pT > 0.9 GeV only (the cpu chain's seeding has a pT floor, acorn has none).

Events: the real TrackML event and one ``small`` event simulated with binary strips, seed 11
(as ``benchmarks/binary_strips.py``). Per setting and event: two_way efficiency, fake and
duplicate rates (fiducial pT > 1 GeV, Clopper-Pearson 68.3% errors), tracks and fake tracks, how
many particles the fake tracks mix (median), the GNN edge purity and pT > 1 GeV truth-edge
efficiency at that cut, and the scores of the edges joining different particles inside fake
tracks ("junctions"), the noise share and the low-pT majority particles of the fake tracks, and
where the lost fiducial particles went (no track, a fake track, too few space points), and
whether the setting meets the target (efficiency within 3 points of the cpu chain's 94.4% on
the real event, fakes <= 2%). Per event: the truth behind the space points (noise, particles
below and above 1 GeV), the share of fiducial particles whose truth edges all pass each cut
(no track building can join a broken chain), and the GNN score distribution (quantiles, share
above each cut) of true and false edges, false edges split into same-particle (non-adjacent
hits), different particles and noise. Runs torch on one thread (set OMP_NUM_THREADS=1 too);
machine time is not measured here.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from binary_strips import first_event
from scaling_runs import SEED, write_result
from trackml_real_data import TARGET_PT, particle_pt, rates

from taas.edm.tracks import Tracks, take_lists
from taas.events.event import Event
from taas.events.presets import PRESETS
from taas.events.simulation import simulate
from taas.gnn.data import GraphSample, build_sample
from taas.gnn.training.graphs import GraphCounts, pair_keys
from taas.metrics.config import MatchingConfig
from taas.metrics.matching import MatchResult, match_tracks
from taas.metrics.rates import track_mask
from taas.metrics.track_pulls import track_lists
from taas.metrics.truth_link import measurement_particles, particle_measurement_counts
from taas.pipeline.evaluation import evaluate_reco
from taas.pipeline.reconstruct import event_inputs, strip_readout, with_model_set
from taas.pipeline.runner import Pipeline
from taas.pipeline.spec import PIPELINES, PipelineSpec
from taas.reco.hit_spacepoints import truth_cell_hit_ids

ROOT = Path(__file__).resolve().parents[1]
MODEL_SET = "binary_strips"
TAIL = ("track_building", "track_fit")
CUTS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
#: The cpu chain on the real event (benchmarks/results/trackml_real_data.json, conditions.cpu).
CPU_REFERENCE = {"efficiency": 0.9444, "fake_rate": 0.0}
#: Post-fit selection tried on every setting (GeV): the fiducial cut less a resolution margin.
POST_FIT_PT = 0.9
TARGET = {"efficiency_min": CPU_REFERENCE["efficiency"] - 0.03, "fake_rate_max": 0.02}


def split(spec: PipelineSpec) -> tuple[PipelineSpec, PipelineSpec]:
    """``spec`` cut before track building: (front end + GNN, track building + fit)."""
    parts = []
    for name, keep in (("head", lambda s: s not in TAIL), ("tail", lambda s: s in TAIL)):
        steps = tuple(step for step in spec.steps if keep(step[0]))
        stages = {s for s, _ in steps}
        parts.append(replace(spec, name=f"{spec.name}_{name}", steps=steps,
                             stage_configs={k: v for k, v in spec.stage_configs.items()
                                            if k in stages}))
    return parts[0], parts[1]


def at_cut(base: dict[str, Any], cut: float, **changes: Any) -> dict[str, Any]:
    """``base`` with edges cut at ``cut``; the walk follows the cut (``walk_min``, and
    ``walk_add`` where it would fall below it)."""
    return {**base, "score_cut": cut, "walk_min": max(base["walk_min"], cut),
            "walk_add": max(base.get("walk_add", 0.8), cut), **changes}


def settings(base: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, track-building config) of the scan; ``base`` is the pipeline's config."""
    cut0 = base["score_cut"]
    out = [(f"walkthrough cut={cut:g}", at_cut(base, cut)) for cut in CUTS]
    out += [(f"cc cut={cut:g}", at_cut(base, cut, method="cc")) for cut in CUTS]
    out += [(f"walkthrough cut={cut0:g} min_hits={hits}", {**base, "min_hits": hits})
            for hits in (3, 5, 10, 12)]
    out += [(f"walkthrough cut={cut0:g} walk_min={walk_min:g}",
             {**base, "walk_min": walk_min, "walk_add": max(0.8, walk_min)})
            for walk_min in (0.5, 0.7)]
    out += [(f"walkthrough cut={cut0:g} walk_add={walk_add:g}", {**base, "walk_add": walk_add})
            for walk_add in (cut0, 0.5, 0.95, 0.99)]
    out.append((f"walkthrough cut={cut0:g} order_by=distance", {**base, "order_by": "distance"}))
    out.append((f"cc cut={cut0:g} min_hits=3", {**base, "method": "cc", "min_hits": 3}))
    # cut and track length together
    out += [(f"walkthrough cut={cut:g} min_hits={hits}", at_cut(base, cut, min_hits=hits))
            for cut, hits in ((0.7, 5), (0.8, 5), (0.8, 6), (0.9, 5), (0.5, 10))]
    return out


def quantiles(x: np.ndarray) -> dict[str, Any]:
    if len(x) == 0:
        return {"n": 0}
    q = np.quantile(x, QUANTILES)
    return {"n": len(x), **{f"q{round(100 * p):02d}": float(v) for p, v in zip(QUANTILES, q,
                                                                               strict=True)},
            "above": {f"{c:g}": float(np.mean(x > c)) for c in CUTS}}


def score_distribution(sample: GraphSample, src: np.ndarray, dst: np.ndarray,
                       score: np.ndarray) -> dict[str, Any]:
    """GNN scores of true and false edges; false split by what the two hits belong to."""
    true = sample.labels(src, dst)
    ps, pd = sample.particle[src], sample.particle[dst]
    noise = (ps == 0) | (pd == 0)
    same = ~true & ~noise & (ps == pd)
    target = np.zeros(len(src), bool)
    if true.any():
        order = np.argsort(sample.particle_ids)
        pos = np.clip(np.searchsorted(sample.particle_ids[order], ps), 0,
                      len(order) - 1)
        found = sample.particle_ids[order][pos] == ps
        target = true & found & (sample.particle_pt[order][pos] > TARGET_PT)
    return {"true": quantiles(score[true]), f"true_pt>{TARGET_PT:g}": quantiles(score[target]),
            "false": quantiles(score[~true]),
            "false_same_particle": quantiles(score[same]),
            "false_different_particles": quantiles(score[~true & ~noise & ~same]),
            "false_with_noise": quantiles(score[~true & noise])}


def composition(sample: GraphSample) -> dict[str, int]:
    """Space points by what made them: noise, particles below / above the target pT."""
    pt = particle_pt(sample.particle, sample.particle_ids, sample.particle_pt)
    noise = sample.particle == 0
    return {"noise": int(noise.sum()), f"pt<{TARGET_PT:g}": int((~noise & (pt <= TARGET_PT)).sum()),
            f"pt>{TARGET_PT:g}": int((pt > TARGET_PT).sum()),
            f"particles_pt>{TARGET_PT:g}": int((sample.particle_pt > TARGET_PT).sum()),
            "particles": len(sample.particle_ids)}


def edge_metrics(sample: GraphSample, src: np.ndarray, dst: np.ndarray, score: np.ndarray,
                 cut: float) -> dict[str, float]:
    keep = score > cut
    counts = GraphCounts()
    counts.add(sample, src[keep], dst[keep], TARGET_PT)
    r = counts.result()
    return {"edges": int(keep.sum()), "purity": float(r["purity"]),
            "efficiency": float(r["efficiency"]),
            "target_efficiency": float(r["target_efficiency"])}


def fake_tracks(event: Event, reco: dict[str, np.ndarray], sample: GraphSample,
                summary: dict[str, Any], min_hits: int) -> dict[str, Any]:
    """What the fake tracks are made of, the GNN scores where their particles meet, and where
    the fiducial particles that no track reconstructs went."""
    config = MatchingConfig()
    n_meas = len(reco["measurements.local_u"])
    particle_of = measurement_particles(truth_cell_hit_ids(event), reco["clusters.cluster_id"],
                                        n_meas, event.hits)
    ids = np.asarray(event.particles["particle_id"], np.uint64)
    offsets, indices = track_lists(reco)
    match = match_tracks(offsets, indices, particle_of, ids,
                         particle_measurement_counts(particle_of, ids), config=config)
    fake = np.flatnonzero(track_mask(match, config) & ~match.matched)
    sp_of_meas = np.full(n_meas, -1, np.int64)
    sp_of_meas[reco["spacepoints.measurement_index"]] = np.arange(
        len(reco["spacepoints.measurement_index"]))
    n = sample.n_nodes
    key = pair_keys(reco["edges.src"], reco["edges.dst"], n)
    order = np.argsort(key)
    key, edge_score = key[order], reco["edges.score"][order]
    r = np.hypot(sample.xyz[:, 0], sample.xyz[:, 1])
    majority_pt = particle_pt(match.majority_particle[fake], ids, np.asarray(event.particles.pt))
    mixed, substantial, noise, junctions, missing = [], [], [], [], 0
    for t in fake:
        meas = indices[offsets[t]:offsets[t + 1]]
        parts = particle_of[meas]
        noise.append(float(np.mean(parts == 0)))
        real = parts[parts > 0]
        uniq, cnt = np.unique(real, return_counts=True)
        mixed.append(len(uniq))
        substantial.append(int((cnt >= 3).sum()))
        sps = sp_of_meas[meas]
        sps = sps[sps >= 0]
        sps = sps[np.argsort(r[sps], kind="stable")]
        a, b = sps[:-1], sps[1:]
        cross = (sample.particle[a] != sample.particle[b])
        k = pair_keys(a[cross], b[cross], n)
        pos = np.clip(np.searchsorted(key, k), 0, max(len(key) - 1, 0))
        hit = (key[pos] == k) if len(key) else np.zeros(len(k), bool)
        junctions.extend(edge_score[pos[hit]].tolist())
        missing += int((~hit).sum())
    return {"n_fake": len(fake),
            "median_particles_mixed": float(np.median(mixed)) if mixed else None,
            "median_particles_with_3_hits": float(np.median(substantial)) if substantial
            else None,
            "median_purity": float(np.median(match.purity[fake])) if len(fake) else None,
            "median_length": float(np.median(match.n_measurements[fake])) if len(fake)
            else None,
            "median_noise_share": float(np.median(noise)) if noise else None,
            f"majority_pt_below_{TARGET_PT:g}": int((majority_pt < TARGET_PT).sum()),
            "junction_scores": quantiles(np.asarray(junctions)),
            "junctions_not_an_edge": missing,
            "lost_fiducial": lost_fiducial(summary, match, fake, sample, min_hits)}


def lost_fiducial(summary: dict[str, Any], match: MatchResult, fake: np.ndarray,
                  sample: GraphSample, min_hits: int) -> dict[str, int]:
    """Fiducial particles not reconstructed: in no track, sharing a fake track, with fewer
    space points than ``min_hits``."""
    p = summary["particles"]
    lost = np.asarray(p["particle_id"][p["fiducial"] & ~p["reconstructed"]], np.uint64)
    in_track = np.isin(lost, match.pair_particle)
    in_fake = np.isin(lost, match.pair_particle[np.isin(match.pair_track, fake)])
    short = np.array([int((sample.particle == pid).sum()) < min_hits for pid in lost], bool)
    return {"lost": len(lost), "in_no_track": int((~in_track).sum()),
            "sharing_a_fake_track": int(in_fake.sum()),
            "fewer_space_points_than_min_hits": int(short.sum())}


def unbroken_chains(summary: dict[str, Any], sample: GraphSample, src: np.ndarray,
                    dst: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Share of the fiducial particles whose truth edges all score above each cut: what any
    track building on those scores can reach without bridging a gap."""
    p = summary["particles"]
    fiducial = np.asarray(p["particle_id"][p["fiducial"]], np.uint64)
    n = sample.n_nodes
    key = pair_keys(src, dst, n)
    order = np.argsort(key)
    key, score = key[order], score[order]
    weakest = np.full(len(fiducial), -1.0)
    for i, pid in enumerate(fiducial):
        mine = sample.truth_particle == pid
        truth = pair_keys(sample.truth_src[mine], sample.truth_dst[mine], n)
        pos = np.clip(np.searchsorted(key, truth), 0, max(len(key) - 1, 0))
        found = key[pos] == truth if len(key) else np.zeros(len(truth), bool)
        weakest[i] = np.where(found, score[pos], -1.0).min() if len(truth) else -1.0
    return {f"{c:g}": float(np.mean(weakest > c)) if len(fiducial) else 0.0 for c in CUTS}


def scan(name: str, event: Event) -> dict[str, Any]:
    spec = with_model_set(PIPELINES["acorn"], MODEL_SET)
    head, tail = split(spec)
    t0 = time.perf_counter()
    pool = Pipeline(head, event.detector, resident=False).run(event_inputs(event)).tensors
    gnn_seconds = time.perf_counter() - t0
    sample = build_sample(event, pool)
    src, dst, score = pool["edges.src"], pool["edges.dst"], pool["edges.score"]
    out: dict[str, Any] = {
        "sizes": event.sizes(), "strip_readout": strip_readout(event),
        "spacepoints": len(pool["spacepoints.x"]), "gnn_edges": len(src),
        "front_end_and_gnn_seconds": gnn_seconds,
        "spacepoint_truth": composition(sample),
        "score_distribution": score_distribution(sample, src, dst, score), "scan": {}}
    base = dict(spec.stage_configs["track_building"])
    for label, config in settings(base):
        t0 = time.perf_counter()
        tail_out = Pipeline(tail, event.detector, {"track_building": config},
                            resident=False).run(pool).tensors
        reco = {**pool, **tail_out}
        row = {"config": config, **evaluate(event, reco, sample, config["min_hits"]),
               "gnn_edges_at_cut": edge_metrics(sample, src, dst, score, config["score_cut"])}
        row[f"fitted_pt>{POST_FIT_PT:g}"] = evaluate(event, fitted_above(reco, POST_FIT_PT),
                                                     sample, config["min_hits"])
        row["seconds"] = time.perf_counter() - t0
        out["scan"][label] = row
        if "unbroken_fiducial_chains" not in out:
            out["unbroken_fiducial_chains"] = unbroken_chains(evaluate_reco(event, reco),
                                                              sample, src, dst, score)
        sel = row[f"fitted_pt>{POST_FIT_PT:g}"]
        print(f"{name:>12} {label:<40} eff {row['efficiency']['value']:.3f} "
              f"fake {row['fake_rate']['value']:.3f} ({row['fake_tracks']}/{row['tracks']}) "
              f"mix {row['fake_track_makeup']['median_particles_mixed']} edge purity "
              f"{row['gnn_edges_at_cut']['purity']:.3f} eff "
              f"{row['gnn_edges_at_cut']['target_efficiency']:.3f} | pT cut: eff "
              f"{sel['efficiency']['value']:.3f} fake {sel['fake_rate']['value']:.3f} "
              f"({sel['fake_tracks']}/{sel['tracks']})", flush=True)
    return out


def evaluate(event: Event, reco: dict[str, np.ndarray], sample: GraphSample,
             min_hits: int) -> dict[str, Any]:
    """Rates, track counts, the fake tracks' make-up, and whether the target is met."""
    summary = evaluate_reco(event, reco)
    counts = summary["counts"]
    fakes = fake_tracks(event, reco, sample, summary, min_hits)
    row = {**rates(summary), "tracks": counts["n_tracks"], "fake_tracks": fakes.pop("n_fake"),
           "reconstructed": counts["n_reconstructed_particles"],
           "fiducial_particles": counts["n_fiducial_particles"], "fake_track_makeup": fakes}
    row["meets_target"] = bool(row["efficiency"]["value"] >= TARGET["efficiency_min"]
                               and row["fake_rate"]["value"] <= TARGET["fake_rate_max"])
    return row


def fitted_above(reco: dict[str, np.ndarray], pt_min: float) -> dict[str, np.ndarray]:
    """``reco`` keeping the fitted tracks with pT = sin(theta) / |q/p| above ``pt_min`` (GeV):
    not a track-building setting, a selection after the fit (the cpu chain's seeding has a pT
    floor, acorn has none)."""
    params = reco["tracks.params"]
    with np.errstate(divide="ignore", invalid="ignore"):
        pt = np.abs(np.sin(params[:, 3]) / params[:, 4])
    rows = np.flatnonzero(np.isfinite(pt) & (pt > pt_min))
    out = dict(reco)
    for column in Tracks.ROW_GROUPS[0]:
        out[f"tracks.{column}"] = reco[f"tracks.{column}"][rows]
    out["tracks.meas_offsets"], out["tracks.meas_indices"] = take_lists(
        reco["tracks.meas_offsets"], reco["tracks.meas_indices"], rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackml", type=Path, default=ROOT.parent / "shared" / "data" / "trackml")
    parser.add_argument("--out", default="real_data_working_point.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = PRESETS["small"]
    with tempfile.TemporaryDirectory() as work:
        binary = first_event(simulate(
            Path(work) / "small_binary", events=1, vertices=preset.vertices,
            particles_per_vertex=preset.particles_per_vertex, seed=SEED,
            strip_readout="binary", progress=False))
    events = {"trackml": first_event(args.trackml), "small_binary": binary}
    result = {"benchmark": "real_data_working_point", "pipeline": "acorn",
              "model_set": MODEL_SET, "threads": torch.get_num_threads(),
              "matching": f"two_way, fiducial pT > {TARGET_PT:g} GeV, |eta| < 2.5, primary; "
                          "Clopper-Pearson 68.3% errors",
              "edge_metrics": "GNN edges scoring above the setting's cut: purity (true/kept), "
                              f"efficiency of all truth edges and of pT > {TARGET_PT:g} GeV ones",
              "junction_scores": "fake tracks, hits ordered by r: GNN score of consecutive "
                                 "hits of different particles that are a GNN edge",
              "cpu_reference_trackml": CPU_REFERENCE, "target": TARGET,
              "simulated_seed": SEED,
              **{name: scan(name, event) for name, event in events.items()}}
    write_result(result, args.out)


if __name__ == "__main__":
    main()
