"""The optional-hardware boundary: a missing extra is named, with its pip command, before any
import and at workflow start."""

from __future__ import annotations

import pytest

from taas import optional
from taas.optional import MissingExtraError, import_optional, missing_modules, require_extras
from taas.stages import registry
from taas.workflow.devices import Devices
from taas.workflow.routing import PlanError, plan_pipelines


@pytest.fixture
def fpga_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without the fpga extra: its module cannot be found."""
    monkeypatch.setitem(optional.EXTRAS, "fpga", ("taas_no_such_module",))


def test_installed_extras_pass() -> None:
    assert missing_modules("gnn") == []
    require_extras(("gnn", "gpu"), needed_by="test")


def test_missing_extra_names_the_pip_command(fpga_missing: None) -> None:
    assert missing_modules("fpga") == ["taas_no_such_module"]
    with pytest.raises(MissingExtraError, match=r"pip install 'taas\[fpga\]'"):
        require_extras(("fpga",), needed_by="stage x/fpga")
    with pytest.raises(MissingExtraError, match=r"taas\[triton\]"):
        import_optional("taas_no_such_module.sub", "triton")


def test_unknown_extra_is_an_error() -> None:
    with pytest.raises(Exception, match="unknown extra"):
        missing_modules("quantum")


def test_registry_and_workflow_stop_at_a_missing_extra(fpga_missing: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.IMPLEMENTATIONS, ("clustering", "fpga"),
                        registry.Implementation("backends.cpu.clustering:CpuClustering",
                                                ("fpga",)))
    with pytest.raises(MissingExtraError, match=r"clustering/fpga needs taas_no_such_module"):
        registry.resolve("clustering", "fpga")
    config = {"pipelines": ["cpu"], "accel": "cpu", "routing": {"clustering": "fpga"}}
    with pytest.raises(PlanError, match=r"pip install 'taas\[fpga\]'"):
        plan_pipelines(config, devices=Devices)
