"""The command line, run as users run it (a real subprocess for --help, main() otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from taas.cli import build_parser, main
from tests.trackml_data import TRACKML_DIR, needs_trackml


def test_help_lists_every_command_with_one_line():
    out = subprocess.run([sys.executable, "-m", "taas.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        assert name in out
        help_line = next(c.help for c in sub._choices_actions if c.dest == name)
        assert help_line, f"{name} has no help line"
        assert parser.description is None or parser.description


def test_missing_directory_is_one_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "taas info: error" in err
    assert "does not exist" in err


@needs_trackml
def test_info_and_convert_on_trackml(tmp_path, capsys):
    assert main(["info", str(TRACKML_DIR), "--out", str(tmp_path / "info")]) == 0
    info = json.loads((tmp_path / "info" / "info.json").read_text())
    assert info["format"] == "trackml"
    assert info["modules"] == 18728
    assert info["events"][0]["cells"] == 18564
    png = tmp_path / "info" / "event000000001-hits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["convert", str(TRACKML_DIR), str(tmp_path / "pq"), "-q"]) == 0
    assert main(["convert", str(tmp_path / "pq"), str(tmp_path / "csv"), "--to", "acts-csv",
                 "-q"]) == 0
    assert main(["info", str(tmp_path / "csv"), "--out", str(tmp_path / "info2")]) == 0
    info2 = json.loads((tmp_path / "info2" / "info.json").read_text())
    assert info2["format"] == "acts-csv"
    assert info2["events"] == info["events"]
    capsys.readouterr()


@pytest.mark.parametrize("command", ["simulate", "info", "convert", "detector"])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: taas " + command in capsys.readouterr().out
