"""One real tritonserver per test session, on a small generated repository (2-core CI budget)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from taas.pipeline.spec import PipelineSpec

#: A short chain of CPU stages, cheap enough for 2-core CI. Its clustering is configured away
#: from the default (4- instead of 8-connectivity) so that the served-equals-direct tests also
#: prove that stage configs reach the served models.
FRONT_END = PipelineSpec("front_end", (("clustering", "cpu"), ("spacepoints", "cpu"),
                                       ("seeding", "cpu")),
                         "clustering, space points, seeding",
                         stage_configs={"clustering": {"connectivity": 4}})
#: Small enough that the test can exceed it cheaply, far above the tiny events.
MAX_ROWS = 200_000


@pytest.fixture(scope="session")
def served_repo(tmp_path_factory: pytest.TempPathFactory, tiny_sim_dir: Path) -> Path:
    from taas.service.model_repo import build_model_repository

    return build_model_repository(tmp_path_factory.mktemp("model_repo"),
                                  detector_path=tiny_sim_dir / "detector.parquet",
                                  stages=list(FRONT_END.steps), pipelines=[FRONT_END],
                                  max_rows=MAX_ROWS)


def start_server(repo: Path, **options: Any) -> Any:
    """A started ``TritonServer`` on ``repo`` (the caller stops it); skips the test when no
    tritonserver binary is installed."""
    from taas.service.server import ServerError, TritonServer, find_binary

    try:
        find_binary()
    except ServerError as exc:
        pytest.skip(f"no tritonserver: {exc}")
    return TritonServer(repo, ready_timeout=180, **options).start()


@pytest.fixture(scope="session")
def triton(served_repo: Path) -> Iterator[object]:
    server = start_server(served_repo)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_event(tiny_sim_dir: Path) -> dict[str, np.ndarray]:
    from taas.events.dataset import open_dataset

    return open_dataset(tiny_sim_dir).read(0).cells.to_tensors()


def assert_same(served: dict[str, np.ndarray], direct: dict[str, np.ndarray]) -> None:
    """Identical names, dtypes, shapes and values (NaN equal to NaN)."""
    assert sorted(served) == sorted(direct)
    for name, want in direct.items():
        got = served[name]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f"), name
