"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line.

Why the CLI: the ``cryptography`` package is not a dependency of taas, and ``openssl`` is on
every machine that runs these tests. Keys are RSA 2048 (fast to make: well under a second) and
valid for one day; the server certificate names ``localhost`` and ``127.0.0.1`` in its
subjectAltName, which is what gRPC checks (not the common name).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ThrowawayCA:
    """PEM files: the CA, a server certificate for loopback, a client certificate, and an
    unrelated CA (to show that a wrong CA is refused)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
             "-days", "1", "-subj", f"/CN=taas test {name}", cwd=directory)
    return cert, key


def _signed(directory: Path, name: str, ca: tuple[Path, Path], extensions: str,
            ) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}.key", directory / f"{name}.csr",
                      directory / f"{name}.pem")
    ext = directory / f"{name}.ext"
    ext.write_text(extensions + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
             f"/CN=taas test {name}", cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "1", "-extfile", ext, cwd=directory)
    return cert, key


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def make_test_ca(directory: Path) -> ThrowawayCA:
    """Write the CA, server, client and unrelated-CA files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _self_signed(directory, "ca")
    server = _signed(directory, "server", ca, "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                     "extendedKeyUsage=serverAuth")
    client = _signed(directory, "client", ca, "extendedKeyUsage=clientAuth")
    other, _ = _self_signed(directory, "other-ca")
    return ThrowawayCA(ca[0], server[0], server[1], client[0], client[1], other)
