"""TLS and token settings of a Triton server and of its clients, as typed, validated values.

Why two halves: the server needs its certificate, key and (for mutual TLS) the CA that signs
client certificates; a client needs the CA that signed the server's certificate and, for mutual
TLS, its own certificate and key. Both share the token.

The token is Triton's *restricted protocol* mechanism (tritonserver 2.51, verified against the
binary): ``--grpc-restricted-protocol=<groups>:<key>=<value>`` makes the server refuse every call
of those protocol groups that does not carry the gRPC header ``triton-grpc-protocol-<key>`` with
exactly ``<value>`` (the server adds that prefix; the HTTP twin ``--http-restricted-api`` expects
the bare ``<key>``). Triton answers a refused call with status UNAVAILABLE and "This protocol is
restricted, expecting header ...", the same answer for a missing and a wrong token.

Which groups need the token (``RESTRICTED_GROUPS``): everything that runs events or changes the
server — ``inference``, ``shared-memory`` (a stranger could otherwise unregister another
client's regions), ``model-repository`` (load/unload), ``trace`` and ``logging`` (server
settings). Left open: ``health`` (liveness/readiness probes of Kubernetes, load balancers and our
own discovery carry no secrets), ``metadata`` and ``model-config`` (what a model takes and
returns, needed to check a server before sending events; no event data), and ``statistics``
(counters that the unauthenticated Prometheus port publishes anyway). The same groups are
restricted on HTTP, whose port has no TLS in Triton: a token sent there travels in clear, which
is why taas' clients use gRPC only.

The token never appears in ``repr``, logs or error messages; it comes from a file or the
``TAAS_TOKEN`` environment variable, not from a command-line argument of ours. Triton itself
takes it only on its command line, so on a host shared with untrusted users the server's process
list shows it: run the server in its own container or user namespace there.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taas.errors import InputError

#: The header key given to Triton; gRPC clients send it as ``GRPC_HEADER_PREFIX + key``.
TOKEN_HEADER = "taas-token"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
#: Environment variables every taas client reads when it is given no settings of its own: how
#: a workflow job (or a user's shell) configures all the clients of a process at once.
TOKEN_ENV = "TAAS_TOKEN"
TOKEN_FILE_ENV = "TAAS_TOKEN_FILE"
CA_ENV = "TAAS_SERVER_CA"
CLIENT_CERT_ENV = "TAAS_CLIENT_CERT"
CLIENT_KEY_ENV = "TAAS_CLIENT_KEY"
#: Protocol groups that need the token (see the module docstring for why these).
RESTRICTED_GROUPS = ("inference", "shared-memory", "model-repository", "trace", "logging")
#: Triton's flag parser splits on ',', ':' and '='; gRPC metadata keys are lowercase tokens.
_HEADER_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_TOKEN_RE = re.compile(r"^[!-~]+$")  # printable ASCII, no spaces (a gRPC metadata value)


def _check_token(token: str | None, field_name: str) -> None:
    if token is None:
        return
    if not _TOKEN_RE.fullmatch(token) or any(c in token for c in ",:="):
        raise ValueError(f"{field_name}: a token is printable ASCII without spaces, ',', ':' "
                         "or '=' (Triton's flag syntax); the value is not shown")


def _check_file(path: Path | None, field_name: str) -> None:
    if path is not None and not path.is_file():
        raise ValueError(f"{field_name}: {path} is not a file")


def _path(value: str | Path | None) -> Path | None:
    return None if value is None or value == "" else Path(value)


def read_token(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); never echoes its content."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise InputError(f"cannot read the token file: {exc.strerror}", path=path) from None
    if not token:
        raise InputError("the token file is empty", path=path)
    return token


@dataclass(frozen=True)
class ServerSecurity:
    """TLS and token of a ``TritonServer``.

    ``server_cert``/``server_key``: PEM files; both or neither (neither: plain gRPC).
    ``root_cert``: the CA that signs client certificates, required with ``mutual``.
    ``token``: required on the ``RESTRICTED_GROUPS`` when set.
    """

    server_cert: Path | None = None
    server_key: Path | None = None
    root_cert: Path | None = None
    mutual: bool = False
    token: str | None = field(default=None, repr=False)
    token_header: str = TOKEN_HEADER

    def __post_init__(self) -> None:
        for name in ("server_cert", "server_key", "root_cert"):
            object.__setattr__(self, name, _path(getattr(self, name)))
            _check_file(getattr(self, name), name)
        if (self.server_cert is None) != (self.server_key is None):
            raise ValueError("server_cert/server_key: give both (TLS) or neither (plain gRPC)")
        if self.mutual and (self.server_cert is None or self.root_cert is None):
            raise ValueError("mutual: mutual TLS needs server_cert, server_key and root_cert "
                             "(the CA that signed the client certificates)")
        if self.root_cert is not None and self.server_cert is None:
            raise ValueError("root_cert: only used with TLS; give server_cert and server_key")
        if not _HEADER_RE.fullmatch(self.token_header):
            raise ValueError(f"token_header: {self.token_header!r} is not a lowercase header key")
        _check_token(self.token, "token")

    @property
    def tls(self) -> bool:
        return self.server_cert is not None

    def server_args(self) -> list[str]:
        """The ``tritonserver`` flags for these settings."""
        args: list[str] = []
        if self.server_cert is not None:
            # --grpc-use-ssl-mutual preempts --grpc-use-ssl (tritonserver --help)
            args += ["--grpc-use-ssl-mutual=true" if self.mutual else "--grpc-use-ssl=true",
                     f"--grpc-server-cert={self.server_cert}",
                     f"--grpc-server-key={self.server_key}"]
            if self.root_cert is not None:
                args.append(f"--grpc-root-cert={self.root_cert}")
        if self.token is not None:
            rule = f"{','.join(RESTRICTED_GROUPS)}:{self.token_header}={self.token}"
            args += [f"--grpc-restricted-protocol={rule}", f"--http-restricted-api={rule}"]
        return args


@dataclass(frozen=True)
class ClientSecurity:
    """How a client reaches a server: TLS (``root_cert``: the CA of the server's certificate,
    else the system's roots; ``client_cert``/``client_key`` for mutual TLS) and a token.

    Giving any certificate turns ``tls`` on.
    """

    tls: bool = False
    root_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    token: str | None = field(default=None, repr=False)
    token_header: str = TOKEN_HEADER

    def __post_init__(self) -> None:
        for name in ("root_cert", "client_cert", "client_key"):
            object.__setattr__(self, name, _path(getattr(self, name)))
            _check_file(getattr(self, name), name)
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert/client_key: give both (mutual TLS) or neither")
        if self.root_cert is not None or self.client_cert is not None:
            object.__setattr__(self, "tls", True)
        if not _HEADER_RE.fullmatch(self.token_header):
            raise ValueError(f"token_header: {self.token_header!r} is not a lowercase header key")
        _check_token(self.token, "token")

    @classmethod
    def from_sources(cls, *, root_cert: str | Path | None = None,
                     client_cert: str | Path | None = None,
                     client_key: str | Path | None = None, token_file: str | Path | None = None,
                     tls: bool = False, env: Mapping[str, str] | None = None) -> ClientSecurity:
        """Settings from files; each one not given comes from the environment if set there
        (``$TAAS_SERVER_CA``, ``$TAAS_CLIENT_CERT``, ``$TAAS_CLIENT_KEY``; the token from
        ``$TAAS_TOKEN_FILE`` or ``$TAAS_TOKEN``). ``InputError`` for bad settings."""
        env = os.environ if env is None else env
        root_cert = root_cert or env.get(CA_ENV) or None
        client_cert = client_cert or env.get(CLIENT_CERT_ENV) or None
        client_key = client_key or env.get(CLIENT_KEY_ENV) or None
        token_file = token_file or env.get(TOKEN_FILE_ENV) or None
        token = read_token(token_file) if token_file else (env.get(TOKEN_ENV) or None)
        try:
            return cls(tls=tls, root_cert=_path(root_cert), client_cert=_path(client_cert),
                       client_key=_path(client_key),
                       token=token.strip() if token else None)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def grpc_options(self) -> dict[str, Any]:
        """Keyword arguments of tritonclient's (sync and aio) ``InferenceServerClient``."""
        if not self.tls:
            return {}
        return {"ssl": True,
                "root_certificates": None if self.root_cert is None else str(self.root_cert),
                "private_key": None if self.client_key is None else str(self.client_key),
                "certificate_chain": None if self.client_cert is None else str(self.client_cert)}

    def headers(self) -> dict[str, str] | None:
        """The header every request carries (``None`` without a token)."""
        if self.token is None:
            return None
        return {GRPC_HEADER_PREFIX + self.token_header: self.token}

    def describe(self) -> dict[str, Any]:
        """What run records say about the connection: never the token itself."""
        return {"tls": self.tls, "root_cert": None if self.root_cert is None
                else str(self.root_cert), "mutual_tls": self.client_cert is not None,
                "token": self.token is not None}


#: No TLS, no token.
PLAIN = ClientSecurity()


def resolve(security: ClientSecurity | None) -> ClientSecurity:
    """``security``, or when ``None`` what the environment says (plain if it says nothing)."""
    return security if security is not None else ClientSecurity.from_sources()


def client_environment(*, ca: str = "", client_cert: str = "", client_key: str = "",
                       token_file: str = "") -> dict[str, str]:
    """The environment variables that give every client of a process these settings (the
    workflow exports its configuration's files this way; empty values are left out)."""
    values = {CA_ENV: ca, CLIENT_CERT_ENV: client_cert, CLIENT_KEY_ENV: client_key,
              TOKEN_FILE_ENV: token_file}
    return {name: str(Path(value).resolve()) for name, value in values.items() if value}


def server_security_from_sources(*, cert: str | Path | None = None, key: str | Path | None = None,
                                 client_ca: str | Path | None = None,
                                 token_file: str | Path | None = None,
                                 env: Mapping[str, str] | None = None) -> ServerSecurity:
    """Server settings from files; mutual TLS when ``client_ca`` is given; the token from
    ``token_file`` else ``$TAAS_TOKEN`` (if set). ``InputError`` for bad settings."""
    env = os.environ if env is None else env
    token = read_token(token_file) if token_file else (env.get(TOKEN_ENV, "").strip() or None)
    try:
        return ServerSecurity(server_cert=_path(cert), server_key=_path(key),
                              root_cert=_path(client_ca), mutual=bool(client_ca), token=token)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def add_client_security_args(parser: argparse.ArgumentParser) -> None:
    """``--server-ca``, ``--tls``, ``--client-cert``, ``--client-key``, ``--token-file``."""
    group = parser.add_argument_group(
        "TLS and token (client side)",
        f"each file not given is taken from ${CA_ENV}, ${CLIENT_CERT_ENV}, ${CLIENT_KEY_ENV}, "
        f"${TOKEN_FILE_ENV} (or the token itself from ${TOKEN_ENV}) when set")
    group.add_argument("--server-ca", type=Path, metavar="PEM",
                       help="CA certificate that signed the server's (turns TLS on)")
    group.add_argument("--tls", action="store_true",
                       help="TLS with the system's CA certificates")
    group.add_argument("--client-cert", type=Path, metavar="PEM",
                       help="client certificate, for servers that require mutual TLS")
    group.add_argument("--client-key", type=Path, metavar="PEM", help="its private key")
    group.add_argument("--token-file", type=Path, metavar="FILE",
                       help=f"file holding the server's token (default: ${TOKEN_ENV} if set); "
                            "sent on every request, never logged")


def client_security_from_args(args: argparse.Namespace) -> ClientSecurity:
    return ClientSecurity.from_sources(root_cert=args.server_ca, client_cert=args.client_cert,
                                       client_key=args.client_key, token_file=args.token_file,
                                       tls=args.tls)


def add_server_security_args(parser: argparse.ArgumentParser) -> None:
    """``--tls-cert``, ``--tls-key``, ``--tls-client-ca``, ``--token-file`` of ``taas serve``."""
    group = parser.add_argument_group("TLS and token (server side)")
    group.add_argument("--tls-cert", type=Path, metavar="PEM", help="server certificate")
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="server private key")
    group.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                       help="require client certificates signed by this CA (mutual TLS)")
    group.add_argument("--token-file", type=Path, metavar="FILE",
                       help=f"require this token for inference (default: ${TOKEN_ENV} if set); "
                            "health and metadata stay open for probes")


def server_security_from_args(args: argparse.Namespace) -> ServerSecurity:
    return server_security_from_sources(cert=args.tls_cert, key=args.tls_key,
                                        client_ca=args.tls_client_ca, token_file=args.token_file)
