"""FRNN (numba kernel and torch gathers) and track building on a real CUDA device agree with
the CPU implementations.

Skips unless torch sees a CUDA device (tests/gnn runs the same code on torch's CPU device).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)

from taas.gnn.frnn import frnn_cpu, frnn_torch  # noqa: E402
from taas.gnn.track_building import components_scipy, components_torch  # noqa: E402
from tests.conftest import tiny_sim_dir  # noqa: E402, F401  (session fixture, re-exported)


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", [True, False], ids=["numba-kernel", "torch-gather"])
@pytest.mark.parametrize(("n", "dim", "r"), [(6_000, 3, 0.05), (50_000, 3, 0.02),
                                             (20_000, 12, 0.3)])
def test_frnn_cuda_equals_kdtree(n, dim, r, kernel):
    rng = np.random.default_rng(n)
    x = rng.random((n, dim)).astype(np.float32)
    src, dst = frnn_cpu(x, r, 32)
    src_gpu, dst_gpu = frnn_torch(torch.as_tensor(x, device="cuda"), r, 32, kernel=kernel)
    assert src_gpu.device.type == "cuda"
    np.testing.assert_array_equal(src_gpu.cpu().numpy(), src)
    np.testing.assert_array_equal(dst_gpu.cpu().numpy(), dst)


@pytest.mark.gpu
def test_connected_components_cuda_equal_scipy():
    rng = np.random.default_rng(3)
    n = 200_000
    src = torch.as_tensor(rng.integers(0, n, 150_000))
    dst = torch.as_tensor(rng.integers(0, n, 150_000))
    expected = components_scipy(n, src, dst)
    labels = components_torch(n, src.cuda(), dst.cuda())
    assert labels.device.type == "cuda"
    np.testing.assert_array_equal(labels.cpu().numpy(), np.asarray(expected))


@pytest.mark.gpu
def test_compiled_edge_models_decide_like_eager_ones(tiny_sim_dir):  # noqa: F811
    """torch.compile'd filter and GNN (config ``compile``) against the eager models, bf16 both."""
    from backends.gpu.edge_classification import GpuEdgeClassification
    from backends.gpu.graph_construction import GpuGraphConstruction
    from taas.events.dataset import open_dataset
    from taas.gnn.data import front_end

    ds = open_dataset(tiny_sim_dir)
    tensors = front_end(ds.read(ds.event_ids[0]))
    eager, compiled = {"compile": False}, {"compile": True}
    graph_c, graph_e = GpuGraphConstruction(None, compiled), GpuGraphConstruction(None, eager)
    assert graph_c.compiled
    assert not graph_e.compiled
    g_c, g_e = graph_c.run(tensors), graph_e.run(tensors)
    assert abs(len(g_c["edges.src"]) - len(g_e["edges.src"])) <= 0.002 * len(g_e["edges.src"])
    s_c = GpuEdgeClassification(None, compiled).run({**tensors, **g_e})["edges.score"]
    s_e = GpuEdgeClassification(None, eager).run({**tensors, **g_e})["edges.score"]
    assert np.mean((s_c > 0.3) == (s_e > 0.3)) > 0.998


@pytest.mark.gpu
def test_split_gnn_inference_on_cuda_equals_forward():
    """``forward_chunked`` (edge networks split into per-node terms, the CPU stage's GNN) runs on
    CUDA too, in fp32, with ``forward``'s logits: the check to pass before the CUDA stage may
    switch to it (it runs ``forward`` today)."""
    from taas.gnn.checkpoint import load_shipped
    from taas.gnn.features import N_NODE_FEATURES, edge_features

    model = load_shipped("gnn").model.cuda().eval()
    g = torch.Generator().manual_seed(0)
    n, e = 20_000, 120_000  # some nodes without edges
    x = torch.randn(n, N_NODE_FEATURES, generator=g).cuda()
    src = torch.randint(0, n, (e,), generator=g).cuda()
    dst = torch.randint(0, n, (e,), generator=g).cuda()
    attr = edge_features(x, src, dst)
    with torch.inference_mode():
        full = model(x, src, dst, attr)
        split = model.forward_chunked(x, src, dst, attr, 1 << 20)
    torch.testing.assert_close(split, full, rtol=1e-3, atol=1e-3)
