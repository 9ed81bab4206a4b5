"""The base of every config model, and the secret reference type.

Every config model derives from :class:`ConfigModel`: unknown keys are errors (a typo in the YAML is
caught), and every field carries a description so that ``edge-inspector config schema`` documents it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


PROJECT_DIR = Path(__file__).resolve().parents[1]
"""The folder the package sits in (the checkout): defaults such as the default recipe live under it."""


class CliValue(str):
    """A value given on the command line (``--set key=value``): a relative path in it is relative to
    the current directory, as a shell user expects, not to the config file's folder."""


def _from_cli(value: object) -> object:
    if isinstance(value, CliValue):
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() else Path(os.path.normpath(Path.cwd() / path))
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's directory (the current one without a file)."""
    value = Path(os.path.expanduser(value))
    if value.is_absolute():
        return value
    base = (info.context or {}).get("base_dir") if info.context else None
    return Path(os.path.normpath((Path(base) if base else Path.cwd()) / value))


ConfigPath = Annotated[Path, BeforeValidator(_from_cli), AfterValidator(_resolve_path)]
"""A filesystem path in the config. Resolved against the config file's directory (a ``--set`` value
against the current one; a default given as an absolute path, under :data:`PROJECT_DIR`, stays)."""


def _check_secret_ref(value: str) -> str:
    kind, sep, rest = value.partition(":")
    if not sep or kind not in ("env", "file") or not rest:
        raise ValueError("a secret must be given as 'env:VARIABLE' or 'file:/path/to/secret', "
                         "never as a literal in the config")
    return value


SecretRef = Annotated[str, AfterValidator(_check_secret_ref)]
"""A reference to a secret: ``env:NAME`` or ``file:PATH``. The value never lives in the YAML."""


def reveal_secret(ref: str) -> str:
    """Read the secret a :data:`SecretRef` points at. Raises ``ValueError`` naming what is missing."""
    kind, _, rest = ref.partition(":")
    if kind == "env":
        if rest not in os.environ:
            raise ValueError(f"environment variable {rest} is not set")
        return os.environ[rest]
    path = Path(rest)
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
