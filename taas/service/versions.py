"""Model versions: what each served model computes, and the client's check that it is expected.

Triton serves numbered versions of a model (directories ``<model>/1``, ``<model>/2``...) under a
version policy (``latest { num_versions: K }`` or ``specific { versions: [...] }``). A version
number alone says nothing about *what* a version computes, so every generated model records,
per version and per step, a ``ModelIdentity``: stage, backend, a hash of the resolved stage
config, a hash of the checkpoint files that config names, and the taas version that built it.
They live in config.pbtxt ``parameters`` (``taas.v<N>.identity``, JSON), so any client reads them
with ``get_model_config``, without running an event.

A client computes the identity it expects with the same function, from the stage name, backend
and the stage config it would run directly, and refuses a served model whose identity differs,
naming every differing field on both sides ("check that the requested model matches the
expectation", as the ExaTrkX-as-a-service studies put it).

Config.pbtxt is one file for all versions of a model, so everything that differs between
versions (the identity and the stage configs) is keyed by version; the tensors, the steps and
the instance groups are shared, and a change of steps needs a new model name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taas import __version__
from taas.errors import TaasError
from taas.stages.configs import PATH_FIELDS

#: Per-version keys of config.pbtxt ``parameters``: ``taas.v2.identity``, ``taas.v2.stage_configs``.
IDENTITY_KEY = "identity"
CONFIGS_KEY = "stage_configs"
_VERSIONED = re.compile(r"^taas\.v(\d+)\.(.+)$")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")

log = logging.getLogger(__name__)


def version_key(version: int, key: str) -> str:
    """The config.pbtxt parameter holding ``key`` of model version ``version``."""
    return f"taas.v{version}.{key}"


def versioned_parameters(parameters: Mapping[str, str]) -> dict[int, dict[str, str]]:
    """``{version: {key: value}}`` of the per-version parameters among ``parameters``."""
    found: dict[int, dict[str, str]] = {}
    for name, value in parameters.items():
        match = _VERSIONED.match(name)
        if match:
            found.setdefault(int(match[1]), {})[match[2]] = value
    return found


class ModelMismatchError(TaasError):
    """The served model is not the one the client expects; the message names both sides."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions Triton serves: the ``num_versions`` newest, or exactly ``versions``.

    The repository builder keeps on disk only the versions the policy serves, so an old
    version's files leave with it.
    """

    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_versions < 1:
            raise ValueError(f"num_versions must be >= 1, got {self.num_versions}")
        if any(v < 1 for v in self.versions):
            raise ValueError(f"versions must be >= 1, got {list(self.versions)}")

    def served(self, versions: Iterable[int]) -> set[int]:
        """The versions among ``versions`` this policy serves."""
        present = sorted(set(versions))
        if self.versions:
            return set(present) & set(self.versions)
        return set(present[-self.num_versions:])


@dataclass(frozen=True)
class ModelIdentity:
    """What one step of a served model computes; equal on both sides iff they compute alike.

    ``config_hash``: sha256 of the stage's resolved config (its dataclass with every default
    filled in, path fields left out) as canonical JSON, so ``{}`` and the defaults spelt out
    hash alike. ``checkpoint_hash``: sha256 over the files the config's path fields name
    (relative path and content of each); empty when the config names none (the stage then uses
    what ships with ``taas_version``).
    """

    stage: str
    backend: str
    config_hash: str
    checkpoint_hash: str = ""
    taas_version: str = __version__

    def __post_init__(self) -> None:
        if not self.stage or not self.backend:
            raise ValueError(f"stage and backend must be named, got {self.stage!r}/"
                             f"{self.backend!r}")
        if not _HEX64.match(self.config_hash):
            raise ValueError(f"config_hash must be 64 hex digits, got {self.config_hash!r}")
        if self.checkpoint_hash and not _HEX64.match(self.checkpoint_hash):
            raise ValueError(f"checkpoint_hash must be empty or 64 hex digits, got "
                             f"{self.checkpoint_hash!r}")

    @classmethod
    def of(cls, stage: str, backend: str,
           config: Mapping[str, Any] | None = None) -> ModelIdentity:
        """The identity of (stage, backend) run with ``config`` (its fields; None: defaults).
        Paths in ``config`` must be readable from here (absolute, or relative to the cwd)."""
        return cls(stage, backend, config_hash(stage, backend, config),
                   checkpoint_hash(config))

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelIdentity:
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise TaasError(f"model identity lacks field(s) {missing}: {dict(data)}")
        return cls(**{n: str(data[n]) for n in names})


def pipeline_identity(steps: Sequence[tuple[str, str]],
                      stage_configs: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> tuple[ModelIdentity, ...]:
    """One identity per step, each step run with its stage's entry of ``stage_configs``."""
    configs = stage_configs or {}
    return tuple(ModelIdentity.of(stage, backend, configs.get(stage)) for stage, backend in steps)


def config_hash(stage: str, backend: str, config: Mapping[str, Any] | None) -> str:
    """sha256 of the resolved config of (stage, backend) as canonical JSON, paths left out."""
    from taas.stages import registry
    from taas.stages.configs import build_config, config_type

    stage_cls = registry.resolve(stage, backend)
    values = dict(config or {})
    if config_type(stage_cls) is None:
        if values:
            build_config(stage_cls, values)  # raises: this stage takes no configuration
        resolved: dict[str, Any] = {}
    else:
        resolved = dataclasses.asdict(build_config(stage_cls, values))  # type: ignore[call-overload]
    for key in PATH_FIELDS:
        resolved.pop(key, None)
    text = json.dumps({"stage": stage, "backend": backend, "config": resolved},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_hash(config: Mapping[str, Any] | None) -> str:
    """sha256 over the files (or directory trees) the config's path fields name; "" if none."""
    digest = hashlib.sha256()
    named = False
    for key in PATH_FIELDS:
        value = (config or {}).get(key)
        if not value:
            continue
        named = True
        root = Path(str(value))
        if not root.exists():
            raise TaasError(f"{key} {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        digest.update(f"{key}\0".encode())
        for path in files:
            relative = path.relative_to(root).as_posix() if root.is_dir() else path.name
            digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest() if named else ""


def format_identity(identity: Sequence[ModelIdentity]) -> str:
    """The JSON of a model version's identity (one entry per step), as config.pbtxt stores it."""
    return json.dumps([i.to_json() for i in identity], sort_keys=True)


def served_identity(config: Mapping[str, Any], version: int) -> tuple[ModelIdentity, ...]:
    """The identity model config JSON (``get_model_config``) records for ``version``."""
    parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    text = parameters.get(version_key(version, IDENTITY_KEY))
    if text is None:
        recorded = sorted(versioned_parameters(parameters))
        raise ModelMismatchError(
            f"model {config.get('name')!r} records no identity for version {version} (it "
            f"records versions {recorded}); rebuild the repository with `taas model-repo "
            f"build`")
    try:
        return tuple(ModelIdentity.from_json(item) for item in json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ModelMismatchError(f"model {config.get('name')!r} version {version}: "
                                 f"unreadable identity {text!r}: {exc}") from None


def differences(expected: Sequence[ModelIdentity],
                served: Sequence[ModelIdentity]) -> list[str]:
    """Each differing field as ``step i stage/backend: field expected X, served Y``."""
    if len(expected) != len(served):
        return [f"steps: expected {[f'{i.stage}/{i.backend}' for i in expected]}, "
                f"served {[f'{i.stage}/{i.backend}' for i in served]}"]
    found = []
    for n, (want, got) in enumerate(zip(expected, served, strict=True)):
        for field in dataclasses.fields(ModelIdentity):
            a, b = getattr(want, field.name), getattr(got, field.name)
            if a != b:
                found.append(f"step {n} {want.stage}/{want.backend}: {field.name} expected "
                             f"{a or '(none)'!s}, served {b or '(none)'!s}")
    return found


class VersionCheck:
    """Which version of ``model`` a client asked for ("" = the latest ready one), the identity
    it expects (None: any), and the version it last checked (``served``).

    ``check`` runs before the first event; ``check_response`` on every response, since with
    "latest" a rollout moves the client to a new version between two events: that version is
    checked before its result is used (a mismatching one is refused, not returned).
    """

    def __init__(self, model: str, url: str, requested: str = "",
                 expected: Sequence[ModelIdentity] | None = None) -> None:
        if requested and not requested.isdigit():
            raise TaasError(f"model version must be a positive integer or '' (latest), got "
                            f"{requested!r}")
        self.model, self.url, self.requested = model, url, requested
        self.expected = None if expected is None else tuple(expected)
        self.served = ""

    def check(self, ready: Sequence[str | int],
              config: Callable[[str], Mapping[str, Any]]) -> str:
        """Pick the version among ``ready`` (model metadata's ``versions``), check the identity
        its model config records (``config(version)``, from ``get_model_config``) against the
        expectation, and return it."""
        versions = sorted(int(v) for v in ready)
        if self.requested and int(self.requested) not in versions:
            raise ModelMismatchError(f"{self.model} at {self.url}: version {self.requested} is "
                                     f"not ready; ready versions: {versions}")
        if not versions:
            raise ModelMismatchError(f"{self.model} at {self.url}: no version is ready")
        version = int(self.requested) if self.requested else versions[-1]
        if self.expected is not None:
            found = differences(self.expected, served_identity(config(str(version)), version))
            if found:
                raise ModelMismatchError(
                    f"{self.model} version {version} at {self.url} is not the expected model "
                    f"(expected: what the client's stage configs compute; served: what "
                    f"config.pbtxt records):\n  " + "\n  ".join(found))
        if self.served and self.served != str(version):
            log.info("%s at %s: now served by version %d (was %s)", self.model, self.url,
                     version, self.served)
        self.served = str(version)
        return self.served

    def check_response(self, version: str,
                       config: Callable[[str], Mapping[str, Any]]) -> None:
        """After a response from ``version``: check it if it is not the version checked last
        (``config(version)`` fetches its model config)."""
        if version and version != self.served:
            self.check([version], config)
