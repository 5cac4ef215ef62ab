"""C simulation of every MLP block of the GNN chain and of our graph kernels against float torch,
on the inputs each block sees in a ``tiny`` event (hls4ml blocks, LayerNorm + ReLU kernel,
gather by edge index, sum/max aggregation, saturating residual)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.fpga.conftest import FPGA_MISSING

if FPGA_MISSING:
    pytest.skip("the FPGA GNN needs hls4ml and torch: pip install 'taas[fpga,gnn]'",
                allow_module_level=True)

from backends.cpu.graph_construction import CpuGraphConstruction
from backends.fpga.config import FpgaConfig
from backends.fpga.hls4ml_models import block_nets
from taas.errors import InputError
from taas.gnn.features import edge_features, node_feature_tensor
from taas.gnn.models import aggregate

pytestmark = pytest.mark.fpga
log = logging.getLogger(__name__)

#: Largest |emulated - float| per block at the default precision (ap_fixed<16,6>: LSB 2^-10
#: ~ 0.001), in LSBs of the data type: rounding of the input, of each layer's result and of
#: 16-bit weights adds up over two to four layers of 64-128 inputs (measured on 400 rows of
#: the tiny event: 0.6-5 LSB, and 32 LSB on the 4-layer filter's logit, whose range is +-20).
MAX_LSB = {"embedding": 16, "filter": 48, "gnn.node_encoder": 8, "gnn.edge_encoder": 16,
           "gnn.edge_net": 16, "gnn.node_net": 16, "gnn.classifier": 32}


@pytest.fixture(scope="module")
def block_inputs(gnn_tiny_event, gnn_fpga_chain) -> dict[str, np.ndarray]:
    """The float inputs of every block in a float torch run of the tiny event's graph."""
    tensors, _ = gnn_tiny_event
    graph = CpuGraphConstruction(None).run(tensors)
    x = node_feature_tensor(tensors, tensors)
    src = torch.from_numpy(graph["edges.src"])
    dst = torch.from_numpy(graph["edges.dst"])
    assert len(src) > 100
    attr = edge_features(x, src, dst)
    models = gnn_fpga_chain.models
    inputs: dict[str, list[torch.Tensor]] = {}
    hooks = [net.register_forward_hook(
        lambda module, args, out, name=name: inputs.setdefault(name, []).append(args[0]))
        for name, net in block_nets(list(models.items())).items()]
    try:
        with torch.no_grad():
            models["embedding"](x)
            models["filter"](x, src, dst, attr)
            models["gnn"](x, src, dst, attr)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(values).double().numpy() for name, values in inputs.items()}


@pytest.mark.parametrize("block", sorted(MAX_LSB))
def test_block_matches_float_torch(block: str, block_inputs, gnn_fpga_chain) -> None:
    chain = gnn_fpga_chain
    rows = block_inputs[block]
    rows = rows[np.random.default_rng(1).permutation(len(rows))[:200]]  # C sim is slow
    quantized = chain.kernels.quantize(rows)
    emulated = chain.blocks[block](rows)
    net = block_nets(list(chain.models.items()))[block]
    with torch.no_grad():
        reference = net(torch.from_numpy(quantized).float()).double().numpy()
    diff = float(np.abs(emulated - reference).max())
    lsb = chain.config.data.resolution
    log.info("%s: max |emulated - float| = %.5f (%.1f LSB) on %d rows", block, diff,
             diff / lsb, len(rows))
    assert emulated.shape == reference.shape
    assert diff <= MAX_LSB[block] * lsb
    # and the emulation is not trivially equal: values sit on the ap_fixed grid
    np.testing.assert_array_equal(np.rint(emulated / lsb) * lsb, emulated)


def test_gather_and_aggregation_match_torch(gnn_fpga_chain) -> None:
    """Hand-made section: gather by index and sum/max aggregation are exact in fixed point
    (values on the grid, no overflow), lonely nodes aggregate to zero, as in torch."""
    k = gnn_fpga_chain.kernels
    rng = np.random.default_rng(3)
    n, width = 7, 5
    h = k.quantize(rng.normal(size=(n, width)))
    src = np.array([0, 0, 1, 2, 3, 3, 5])
    dst = np.array([1, 2, 2, 3, 4, 5, 4])  # node 6 has no edge at all
    e = k.quantize(rng.normal(size=(len(src), width)))
    gathered = k.gather_edge_inputs(h, e, src, dst)
    np.testing.assert_array_equal(gathered, np.concatenate([h[src], h[dst], e], axis=1))
    out = k.node_inputs(h, e, src, dst)
    et, st, dt = torch.from_numpy(e), torch.from_numpy(src), torch.from_numpy(dst)
    expected = torch.cat([torch.from_numpy(h), aggregate(et, dt, n), aggregate(et, st, n)], 1)
    np.testing.assert_array_equal(out, expected.numpy())
    assert not out[6, width:].any()


def test_residual_saturates_instead_of_wrapping(gnn_fpga_chain) -> None:
    k = gnn_fpga_chain.kernels
    top = 2.0 ** (FpgaConfig().data.integer - 1)
    out = k.residual_add(np.array([top - 1, -top + 1, 0.5]), np.array([5.0, -5.0, 0.25]))
    np.testing.assert_array_equal(out, [top - k.config.data.resolution, -top, 0.75])


def test_layernorm_kernel_matches_torch(gnn_fpga_chain) -> None:
    """Our LayerNorm + ReLU against torch, including variances far above 1 (where hls4ml 1.3's
    table saturates) and tiny ones."""
    k = gnn_fpga_chain.kernels
    rng = np.random.default_rng(5)
    scale = np.repeat([0.05, 1.0, 5.0], 20)[:, None]  # within norm_input's range (+-32)
    x = rng.normal(size=(60, 64)) * scale
    norm = torch.nn.LayerNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
        gamma, beta = norm.weight.double().numpy(), norm.bias.double().numpy()
        reference = torch.relu(norm.double()(torch.from_numpy(x))).numpy()
    emulated = k.layernorm_relu(x, gamma, beta, norm.eps)
    assert np.abs(emulated - reference).max() <= 2 * k.config.data.resolution


def test_non_finite_input_is_a_clear_error(gnn_fpga_chain) -> None:
    x = np.zeros((3, gnn_fpga_chain.blocks["embedding"].n_in))
    x[1, 2] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        gnn_fpga_chain.blocks["embedding"](x)
    with pytest.raises(InputError, match="non-finite"):
        gnn_fpga_chain.gnn_logits(x, np.array([0]), np.array([1]))


def test_bad_edge_index_is_a_clear_error(gnn_fpga_chain) -> None:
    k = gnn_fpga_chain.kernels
    h = np.zeros((3, 4))
    with pytest.raises(InputError, match="edge index"):
        k.node_inputs(h, np.zeros((1, 4)), np.array([0]), np.array([3]))
    with pytest.raises(InputError, match="section size"):
        k.node_inputs(np.zeros((k.section_nodes + 1, 4)), np.zeros((0, 4)),
                      np.zeros(0, np.int64), np.zeros(0, np.int64))
