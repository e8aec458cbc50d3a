"""Ray token authentication: where the token comes from and how processes are told about it.

Ray 2.60 turns token auth on for local clusters, and every process of a cluster (head, workers, drivers,
Jobs API clients) must agree on ``RAY_AUTH_MODE=token`` and on the same token, given either inline
(``RAY_AUTH_TOKEN``) or as a file (``RAY_AUTH_TOKEN_PATH``; Ray's default is ``~/.ray/auth_token``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cluster import ray_private
from textune.errors import TextuneError

MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"
SET_TOKEN_HINT = (
    f"Set {TOKEN_PATH_VAR} to the cluster's token file (or {TOKEN_VAR} to the token itself) "
    f"and {MODE_VAR}=token; for a local cluster, `textune cluster status` shows its token file."
)


def token_source() -> str | None:
    """Where this process would take its token from, for messages (``None`` when there is none)."""
    if os.environ.get(TOKEN_VAR):
        return TOKEN_VAR
    path = os.environ.get(TOKEN_PATH_VAR)
    if path:
        if not Path(path).expanduser().is_file():
            raise TextuneError(
                f"{TOKEN_PATH_VAR}={path} names a file that does not exist.", "Point it at the cluster's token file."
            )
        return f"{TOKEN_PATH_VAR}={path}"
    if DEFAULT_TOKEN_PATH.is_file():
        return str(DEFAULT_TOKEN_PATH)
    return None


def enable_token_mode() -> None:
    """Turn token mode on for this process (and its children) when a token is configured but the mode is not."""
    if os.environ.get(MODE_VAR) or not (os.environ.get(TOKEN_VAR) or os.environ.get(TOKEN_PATH_VAR)):
        return
    os.environ[MODE_VAR] = "token"
    ray_private.reload_auth_config()


def new_token() -> str:
    """A fresh 256-bit token, as hex."""
    return secrets.token_hex(32)


def write_token_file(path: Path) -> Path:
    """Generate a 256-bit token into a new file only its owner can read; never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: a token file that already exists belongs to a running cluster; keep it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(new_token())
    return path


def use_token_file(token_path: Path) -> None:
    """Make this process (and the processes it starts) authenticate with the token in ``token_path``."""
    os.environ.pop(TOKEN_VAR, None)  # an inline token would win over the file
    os.environ.update(token_environment(token_path))
    ray_private.reload_auth_config()


def default_to_token_file(token_path: Path) -> None:
    """Use the token in ``token_path`` unless the user chose a token (a local cluster's own token)."""
    if not (os.environ.get(TOKEN_VAR) or os.environ.get(TOKEN_PATH_VAR)):
        use_token_file(token_path)


def token_environment(token_path: Path) -> dict[str, str]:
    """The variables a process needs to join or use a cluster whose token is in ``token_path``."""
    return {MODE_VAR: "token", TOKEN_PATH_VAR: str(token_path)}
