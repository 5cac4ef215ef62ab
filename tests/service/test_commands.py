"""The service sub-commands parse and call the library (no server needed for model-repo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from taas.service.commands import add_service_commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taas")
    add_service_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_model_repo_build(tmp_path: Path, capsys) -> None:
    detector = tmp_path / "detector.parquet"
    detector.write_bytes(b"x")
    args = _parser().parse_args(["model-repo", "build", str(tmp_path / "repo"), "--detector",
                                 str(detector), "--stages", "clustering/cpu", "--pipelines",
                                 "--instances", "2", "--max-rows", "10"])
    args.func(args)
    assert "clustering_cpu" in capsys.readouterr().out
    text = (tmp_path / "repo" / "clustering_cpu" / "config.pbtxt").read_text()
    assert "count: 2" in text
    assert 'string_value: "10"' in text


def test_serve_and_loadgen_parse() -> None:
    args = _parser().parse_args(["serve", "--model-repository", "r", "--grpc-port", "9001"])
    assert args.grpc_port == 9001
    assert args.host == "127.0.0.1"
    args = _parser().parse_args(["loadgen", "--model", "pipeline_cpu", "--events", "e",
                                 "--concurrency", "1", "2"])
    assert args.concurrency == [1, 2]
    assert args.url == "127.0.0.1:8001"
