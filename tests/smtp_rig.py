"""The daemon's reception path in the test's event loop: the real SMTP listener, the policy
answering its events (engine/smtp_policy.py), the real reception, spool and log records, on
a loopback port. Tests talk to it with aiosmtplib, as any SMTP client would."""

from __future__ import annotations

import json
import ssl
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiosmtplib
import trustme

from kumoclient.configs import EsmtpListenerConfig
from kumoclient.engine.reception import Reception
from kumoclient.engine.smtp_policy import PolicyEvents
from kumoclient.listener import SmtpServer, start_listener
from kumoclient.logs import RecordLog
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.spool import Spool
from tests.conftest import record_writer
from tests.smtp_client import Client

MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


@dataclass
class SmtpRig:
    """A listener on `port` storing into `spool`, its records written to `log`."""

    port: int
    spool: Spool
    log: RecordLog
    log_dir: Path
    server: SmtpServer
    raw_clients: list[Client] = field(default_factory=list)

    async def raw(self) -> Client:
        """A line-level client, connected and past EHLO (closed with the rig)."""
        client = await Client.connect(self.port)
        self.raw_clients.append(client)
        return client

    def client(self, **options: Any) -> aiosmtplib.SMTP:
        """An aiosmtplib client for the listener (not yet connected)."""
        options.setdefault("start_tls", False)
        return aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, timeout=10, **options)

    async def records(self) -> list[dict[str, Any]]:
        """Every log record written so far."""
        await self.log.sync()
        found = []
        for path in sorted(self.log_dir.glob("*.jsonl")):
            found += [json.loads(line) for line in path.read_text().splitlines()]
        return found

    async def contents(self) -> list[bytes]:
        """The content of every spooled message."""
        return [await self.spool.read_content(m.id) for m in self.spool.enumerate()]


async def smtp_rig(tmp_path: Path, policy: str = "", **listener: Any) -> AsyncIterator[SmtpRig]:
    """Yield a rig on `policy` (Lua source) with `listener` keys (EsmtpListenerConfig fields)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    policy_path = tmp_path / "policy.lua"
    policy_path.write_text(textwrap.dedent(policy))
    spool = Spool(tmp_path / "spool")
    await spool.start()
    log = RecordLog(tmp_path / "logs")
    await log.open()
    holder = PolicyHolder(policy_path, memo=MemoRegistry())
    reception = Reception(holder, spool, record_writer(spool, log))
    config = replace(EsmtpListenerConfig(listen="127.0.0.1:0"), **listener)
    server = await start_listener(config, reception.accept_transaction, events=PolicyEvents(holder))
    port = server.sockets[0].getsockname()[1]
    rig = SmtpRig(port, spool, log, tmp_path / "logs", server)
    try:
        yield rig
    finally:
        for client in rig.raw_clients:
            await client.close()
        server.close()
        await spool.close()
        await log.close()


def tls_files(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    """Listener keys with a trustme certificate for "localhost", and a client context trusting
    it."""
    authority = trustme.CA()
    server_cert = authority.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return {"tls_certificate": str(cert), "tls_private_key": str(key)}, client_context
