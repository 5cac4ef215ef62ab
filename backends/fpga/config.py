"""The one configuration of the FPGA GNN blocks: fixed-point types, reuse factor, graph sections.

Every number that changes the emulated arithmetic (and so the compiled C simulation) lives in
:class:`FpgaConfig`: the hls4ml conversion, our own HLS kernels (``hls/graph_kernels.h``) and
the compile cache key all read it from here, so two blocks can never disagree on a type.

Precision model (hls4ml's names, one type per role):

* ``data``: every tensor between blocks -- hls4ml inputs and layer results, the node and edge
  states of the interaction GNN, the gathered edge inputs, the aggregated messages. Rounded
  (``AP_RND_CONV``) and saturated (``AP_SAT``): ``ap_fixed``'s defaults, truncation and *wrap*
  on overflow, turn an out-of-range value into a wrong sign silently.
* ``weight_width``: total bits of weights, biases and LayerNorm scales/offsets; the integer bits
  are chosen per layer from the largest magnitude in that layer (``weight_integer_bits``), so
  a layer of small weights keeps its resolution (per-layer precision where it matters).
* ``norm_input``: the result of a Linear layer that feeds a LayerNorm. LayerNorm divides by the
  row's standard deviation (0.2-1 in the shipped filter), which scales the rounding error of its
  input up: these results keep more fractional bits (on tiny-event inputs the filter logit's
  largest error fell from 104 to 32 LSB of ``data`` with ``ap_fixed<24,6>``; the default
  ``ap_fixed<22,6>`` keeps 16 fractional bits, 6 more than ``data``).
* ``layer_data``: per-layer overrides of ``data``, keyed ``"<block>.<index>"`` with the index
  of the layer in the block's ``nn.Sequential`` (e.g. ``"gnn.node_net.0"`` is the first Linear
  of the node network, whose result is the LayerNorm's input); a mapping is accepted.
* Accumulators of the dense layers are hls4ml's exact ``auto`` width (no overflow possible);
  the sum aggregation accumulates ``aggregation_guard_bits`` more integer bits than ``data``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taas.gnn.stages import GnnStageConfig
from taas.stages.configs import coerce_config

#: hls4ml's dense-layer strategies that apply to io_parallel Vitis models.
STRATEGIES = ("Latency", "Resource")

_FIXED = re.compile(r"^\s*ap_fixed<\s*(\d+)\s*,\s*(-?\d+)\s*>\s*$")


@dataclass(frozen=True)
class FixedPoint:
    """``ap_fixed<width, integer, AP_RND_CONV, AP_SAT>``: sign bit included in ``integer``."""

    width: int
    integer: int

    def __post_init__(self) -> None:
        if not 2 <= self.width <= 32:
            raise ValueError(f"FixedPoint.width must be in [2, 32], got {self.width}")
        if not 1 <= self.integer <= self.width:
            raise ValueError(f"FixedPoint.integer must be in [1, width={self.width}], "
                             f"got {self.integer}")

    @classmethod
    def coerce(cls, value: FixedPoint | str | tuple[int, int] | list[int]) -> FixedPoint:
        """From an instance, ``"ap_fixed<16,6>"`` or ``(16, 6)``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            match = _FIXED.match(value)
            if not match:
                raise ValueError(f"precision {value!r} is not of the form 'ap_fixed<W,I>'")
            return cls(int(match[1]), int(match[2]))
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(int(value[0]), int(value[1]))
        raise ValueError(f"precision must be FixedPoint, 'ap_fixed<W,I>' or (W, I), got {value!r}")

    @property
    def fractional(self) -> int:
        return self.width - self.integer

    @property
    def resolution(self) -> float:
        """Value of the least significant bit."""
        return 2.0 ** -self.fractional

    @property
    def hls(self) -> str:
        """The type as hls4ml's config and our kernels spell it."""
        return f"ap_fixed<{self.width},{self.integer},AP_RND_CONV,AP_SAT>"

    def __str__(self) -> str:
        return f"ap_fixed<{self.width},{self.integer}>"


def weight_integer_bits(max_abs: float) -> int:
    """Integer bits (sign included) that hold ``max_abs`` without saturating."""
    bits = 1
    while 2.0 ** (bits - 1) <= max_abs:
        bits += 1
    return bits


@dataclass(frozen=True)
class FpgaConfig:
    """Fixed-point types, hls4ml settings and graph sections of the FPGA GNN stages.

    Sections: the interaction GNN runs on fixed-size graph sections (``section_nodes`` nodes,
    ``section_edges`` edges, the array sizes of the HLS kernels), one per (eta, phi) sector
    of ``eta_sectors`` x ``phi_sectors``, holding the sector's edges and every node within
    ``halo_hops`` graph hops of them, so that the message passing near a sector's border sees
    the neighbours it would see in the whole event (as many hops as the GNN has iterations is
    exact; 4 changed no edge decision on a ``medium`` event). A sector whose section overflows
    the budget is split in two, in phi down to ``min_sector_phi``, then in eta down to
    ``min_sector_eta``; past that the event is rejected with an ``InputError`` (see
    ``backends.fpga.sections`` for the measurements behind these defaults).

    ``threads``: sections emulated in parallel (the C simulation releases the GIL).
    Compiled C simulations live in the FPGA backend's one cache, ``backends.fpga.build.
    cache_dir()`` (``~/.cache/taas/fpga``; the ``TAAS_FPGA_CACHE`` variable overrides it).
    """

    #: The smallest scanned precision that keeps the issue's targets on a whole ``medium``
    #: event (seed 11, 3,799 fiducial particles): 0.9800 efficiency / 0.33% fakes against
    #: acorn's 0.9803 / 0.36% (``fpga_vs_acorn_medium_16_6.json``); ``ap_fixed<14,6>`` loses
    #: 0.8 points on a medium phi wedge (``fpga_precision_medium_wedge.json``). Same LSB
    #: (2^-10) as the earlier ``ap_fixed<18,8>``, range +-32: enough for the filter's logits.
    data: FixedPoint = FixedPoint(16, 6)
    norm_input: FixedPoint = FixedPoint(22, 6)
    weight_width: int = 16
    layer_data: tuple[tuple[str, FixedPoint], ...] = ()
    aggregation_guard_bits: int = 4
    reuse_factor: int = 1
    strategy: str = "Latency"
    tanh_table_size: int = 4096
    section_nodes: int = 4096
    section_edges: int = 16384
    eta_sectors: int = 1
    phi_sectors: int = 8
    halo_hops: int = 4
    min_sector_eta: float = 0.25
    min_sector_phi: float = 0.05
    threads: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", FixedPoint.coerce(self.data))
        object.__setattr__(self, "norm_input", FixedPoint.coerce(self.norm_input))
        # stored as sorted pairs, so that the config stays hashable (one compiled library per
        # distinct config); a mapping is accepted
        given: Any = self.layer_data
        pairs = given.items() if isinstance(given, Mapping) else given
        object.__setattr__(self, "layer_data", tuple(sorted(
            (str(k), FixedPoint.coerce(v)) for k, v in pairs)))
        if not 4 <= self.weight_width <= 32:
            raise ValueError(f"weight_width must be in [4, 32], got {self.weight_width}")
        if not 0 <= self.aggregation_guard_bits <= 8:
            raise ValueError(f"aggregation_guard_bits must be in [0, 8], "
                             f"got {self.aggregation_guard_bits}")
        if self.data.width + self.aggregation_guard_bits > 32:
            raise ValueError(f"data.width + aggregation_guard_bits must be at most 32, got "
                             f"{self.data.width} + {self.aggregation_guard_bits}")
        if self.reuse_factor < 1:
            raise ValueError(f"reuse_factor must be >= 1, got {self.reuse_factor}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.tanh_table_size < 64 or self.tanh_table_size & (self.tanh_table_size - 1):
            raise ValueError(f"tanh_table_size must be a power of two >= 64, "
                             f"got {self.tanh_table_size}")
        for name in ("section_nodes", "section_edges"):
            value = getattr(self, name)
            if not 8 <= value <= 1 << 20:
                raise ValueError(f"{name} must be in [8, 2^20], got {value}")
        for name in ("eta_sectors", "phi_sectors", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.halo_hops <= 32:
            raise ValueError(f"halo_hops must be in [0, 32], got {self.halo_hops}")
        for name in ("min_sector_eta", "min_sector_phi"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def coerce(cls, config: FpgaConfig | Mapping[str, Any] | None) -> FpgaConfig:
        """A config from None, an instance or a mapping (the workflow passes dicts)."""
        return coerce_config(cls, config)

    def data_for(self, layer: str, *, feeds_norm: bool = False) -> FixedPoint:
        """The type of layer ``"<block>.<index>"``'s result: its override, else
        ``norm_input`` for a layer that feeds a LayerNorm, else ``data``."""
        default = self.norm_input if feeds_norm else self.data
        return dict(self.layer_data).get(layer, default)

    @property
    def aggregation(self) -> FixedPoint:
        """Accumulator of the sum aggregation: ``data`` with guard bits on the integer side."""
        return FixedPoint(self.data.width + self.aggregation_guard_bits,
                          self.data.integer + self.aggregation_guard_bits)


@dataclass(frozen=True)
class FpgaGnnStageConfig(GnnStageConfig):
    """What an FPGA GNN stage takes: the GNN stages' configuration plus ``fpga``, the
    ``FpgaConfig`` of its blocks (an instance or a mapping of its fields: the workflow's stage
    configs carry ``{"graph_construction": {"fpga": {"data": "ap_fixed<16,6>"}}}``)."""

    fpga: FpgaConfig | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fpga", FpgaConfig.coerce(self.fpga))
