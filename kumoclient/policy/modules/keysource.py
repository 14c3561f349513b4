"""KeySources (a file name, `{key_data=}`, a HashiCorp Vault KV v2 secret) and
`kumo.secrets.load`, which returns the bytes one holds.

The Vault form reads `GET <vault_address>/v1/<vault_mount>/data/<vault_path>` with the token in
`X-Vault-Token` (`$VAULT_ADDR` / `$VAULT_TOKEN` when not given) and takes the field `vault_key`
(default `key`) of the secret. The event form (`{event_name=, event_args=}`) needs events
called from inside a kumo function, which this runtime does not do yet: it is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp

from kumoclient.errors import ConfigError
from kumoclient.policy.api import kumo_function

VAULT_TIMEOUT = 30.0  # seconds for one Vault request
_FORMS = (
    "a file name, {key_data=...}, {vault_mount=..., vault_path=...} or "
    "{event_name=..., event_args=...}"
)


async def load_key(what: str, base: str, source: Any) -> bytes:
    """The bytes of a KeySource; a relative file name is relative to `base`."""
    if isinstance(source, str):
        return _read_file(what, Path(base, source))
    if isinstance(source, dict):
        if "key_data" in source:
            data = source["key_data"]
            if isinstance(data, str):
                return data.encode("utf-8")
            if isinstance(data, bytes):
                return data
            raise ConfigError(f"{what}: key_data must be a string")
        if "vault_mount" in source and "vault_path" in source:
            return await read_vault(what, source)
        if "event_name" in source:
            raise ConfigError(f"{what}: KeySource {{event_name=...}} is not supported yet")
    raise ConfigError(f"{what}: a KeySource is {_FORMS}; got {source!r}")


def _read_file(what: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{what}: KeySource failed to load data from file `{path}`: {exc.strerror}"
        ) from exc


def _setting(what: str, source: dict[str, Any], key: str, variable: str) -> str:
    value = source.get(key)
    if value is None:
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"{what}: {key} was not specified and ${variable} is not set")
    if not isinstance(value, str):
        raise ConfigError(f"{what}: {key} must be a string")
    return value


async def read_vault(what: str, source: dict[str, Any]) -> bytes:
    """One field of a Vault KV v2 secret, as bytes."""
    address = _setting(what, source, "vault_address", "VAULT_ADDR")
    token = _setting(what, source, "vault_token", "VAULT_TOKEN")
    mount, path = source["vault_mount"], source["vault_path"]
    field = source.get("vault_key", "key")
    if not all(isinstance(v, str) for v in (mount, path, field)):
        raise ConfigError(f"{what}: vault_mount, vault_path and vault_key must be strings")
    where = f"vault_mount={mount}, vault_path={path}"
    url = f"{address.rstrip('/')}/v1/{mount.strip('/')}/data/{path.strip('/')}"
    timeout = aiohttp.ClientTimeout(total=VAULT_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={"X-Vault-Token": token}) as response,
        ):
            if response.status != 200:
                detail = (await response.text())[:200]
                raise ConfigError(f"{what}: reading {where}: HTTP {response.status}: {detail}")
            document = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"{what}: reading {where}: {exc or type(exc).__name__}") from exc
    data = document.get("data") if isinstance(document, dict) else None
    secret = data.get("data") if isinstance(data, dict) else None
    value = secret.get(field) if isinstance(secret, dict) else None
    if not isinstance(value, str):
        raise ConfigError(f"{what}: vault secret at {path} does not contain key '{field}'")
    return value.encode("utf-8")


@kumo_function("secrets.load", source=True)
async def load(base: str, source: Any) -> bytes:
    """`kumo.secrets.load(KEYSOURCE)`: the bytes the source holds."""
    return await load_key("kumo.secrets.load", base, source)
