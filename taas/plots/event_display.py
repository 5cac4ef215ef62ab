"""A first picture of an event: measured hit positions in x-y and r-z, coloured by volume."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from taas.detector.geometry_id import decode
from taas.events.event import Event


def hit_positions(event: Event) -> np.ndarray:
    """(n, 3) global positions of the source's reconstructed hits (its reference local u, v)."""
    h = event.hits
    rows = event.detector.index_of(h["module_key"])
    return event.detector.local_to_global(rows, h["ref_u"], h["ref_v"])


def plot_event(event: Event, path: str | Path) -> Path:
    """Write the x-y and r-z views of ``event`` as a PNG and return its path."""
    xyz = hit_positions(event)
    volume = decode(event.hits["module_key"])["volume"]
    r = np.hypot(xyz[:, 0], xyz[:, 1])
    fig, (ax_xy, ax_rz) = plt.subplots(1, 2, figsize=(14.5, 5.5), width_ratios=(1, 1.6))
    cmap = plt.get_cmap("tab10")
    for i, vol in enumerate(np.unique(volume)):
        sel = volume == vol
        style = {"s": 1.5, "color": cmap(i % 10), "label": f"volume {vol} ({sel.sum()})"}
        ax_xy.scatter(xyz[sel, 0], xyz[sel, 1], **style)
        ax_rz.scatter(xyz[sel, 2], r[sel], **style)
    ax_xy.set(xlabel="x [mm]", ylabel="y [mm]", aspect="equal", title="transverse view")
    ax_rz.set(xlabel="z [mm]", ylabel="r [mm]", title="longitudinal view")
    ax_rz.legend(markerscale=6, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    sizes = event.sizes()
    fig.suptitle(f"event {event.event_id} ({event.source}): {sizes['cells']} cells, "
                 f"{sizes['hits']} hits, {sizes['particles']} particles")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
