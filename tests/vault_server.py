"""A Vault KV v2 read endpoint on loopback for the tests of KeySources (a scripted fake: no
Vault server can be installed here). It checks the request's token and path as Vault would:
403 for another token, 404 for a path it does not hold."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def vault_kv2(token: str, secrets: Mapping[str, Mapping[str, str]]) -> AsyncIterator[str]:
    """Serve `secrets` (path under the `secret` mount → its fields); yields the address."""

    async def read(request: web.Request) -> web.Response:
        if request.headers.get("X-Vault-Token") != token:
            return web.json_response({"errors": ["permission denied"]}, status=403)
        secret = secrets.get(request.match_info["path"])
        if secret is None:
            return web.json_response({"errors": []}, status=404)
        return web.json_response({"data": {"data": dict(secret), "metadata": {"version": 1}}})

    app = web.Application()
    app.router.add_get("/v1/secret/data/{path:.+}", read)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
