"""Shared fixtures of the FPGA tests.

GNN side (``test_gnn_*``): the user's compile cache (``gnn_fpga_cache``), into which the hls4ml
blocks and graph kernels of the shipped checkpoints are compiled once per change
(``gnn_fpga_chain``), and the front-end tensors of one ``tiny`` event (``gnn_tiny_event``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from taas.optional import missing_modules

FPGA_MISSING = bool(missing_modules("fpga") or missing_modules("gnn"))


@pytest.fixture(scope="session")
def gnn_fpga_cache() -> Path:
    """The FPGA compile cache of the GNN tests: the user's (``backends.fpga.build.cache_dir``,
    the one the workflow's fpga jobs use). Entries are named by the SHA-256 of everything that
    goes into a build, so a block an earlier run compiled is loaded, not rebuilt, and a changed
    block gets a new entry; the cache's own behaviour (racing builds, moved or damaged entries)
    is tested in caches of their own (``test_gnn_cache.py``, ``test_frontend_cache.py``)."""
    from backends.fpga.build import cache_dir

    return cache_dir()


@pytest.fixture(scope="session")
def gnn_fpga_chain(gnn_fpga_cache: Path) -> Any:
    """Embedding, filter and interaction GNN of the shipped checkpoints in C simulation, with
    the default ``FpgaConfig`` (compiled into ``gnn_fpga_cache``)."""
    from backends.fpga.config import FpgaConfig
    from backends.fpga.gnn_emulation import FixedPointGnnChain
    from taas.gnn.checkpoint import SHIPPED, load_shipped

    return FixedPointGnnChain([(name, load_shipped(name).model) for name in SHIPPED],
                              FpgaConfig())


@pytest.fixture(scope="session")
def gnn_tiny_event(tiny_sim_dir: Path) -> tuple[dict[str, np.ndarray], Any]:
    """Front-end tensors (clusters, space points + features) and truth of a ``tiny`` event."""
    from taas.events.dataset import open_dataset
    from taas.gnn.data import build_sample, front_end

    ds = open_dataset(tiny_sim_dir)
    event = ds.read(ds.event_ids[0])
    tensors = front_end(event)
    return tensors, build_sample(event, tensors)
