"""Event data model: typed columnar tables that convert to and from named tensors."""

from taas.edm.hits import Cells, Clusters, Measurements, Spacepoints
from taas.edm.table import Table, TensorSpec
from taas.edm.tracks import Edges, ProtoTracks, Seeds, Tracks
from taas.edm.truth import Particles, TruthHits

__all__ = [
    "Cells", "Clusters", "Edges", "Measurements", "Particles", "ProtoTracks", "Seeds",
    "Spacepoints",
    "Table", "TensorSpec", "Tracks", "TruthHits",
]
