#!/usr/bin/env python3
# /// script
# dependencies = ["nox>=2025.10.14"]
# ///
"""nox sessions for contributors who reach for ``nox``: each runs a Makefile target.

The Makefile is the task runner (``.ci/run`` calls ``make test``) and the one home of the
commands; these sessions only make ``nox -s lint`` / ``nox -s tests`` / ``nox -s demo`` do the
same thing. The Makefile creates and fills ``.venv`` itself, so nox makes no environment.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.10.14"
nox.options.default_venv_backend = "none"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy, the import-layer contracts, snakefmt, snakemake --lint, sp-repo-review."""
    session.run("make", "lint", external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The lint session's checks, then the pytest suite (what CI runs)."""
    session.run("make", "test", external=True)


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The Snakemake workflow on its defaults."""
    session.run("make", "demo", external=True)


if __name__ == "__main__":
    nox.main()
