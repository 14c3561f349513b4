"""kumoclient as a library: start an Engine in your own asyncio program, submit a message,
await its disposition.

    python examples/library.py

To have something to deliver to, this example starts a small SMTP server (aiosmtpd, which
kumoclient already depends on) on a loopback port and writes a policy whose mx_list points
at it. In your program the policy is your own file and the MX is the real one.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient import Engine


class Sink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        print(f"the MX received a message for {envelope.rcpt_tos}")
        return "250 2.0.0 OK"


POLICY = """
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1:%d' } } } }
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path { prohibited_hosts = {}, enable_tls = 'Disabled' }
end)
"""


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink()), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.lua"
        policy.write_text(POLICY % port)
        async with Engine(policy, data_dir=Path(tmp) / "data") as engine:
            [message_id] = await engine.submit(
                "me@example.com", ["you@example.net"], b"Subject: hi\r\n\r\nhello\r\n"
            )
            record = await engine.outcome(message_id)
            print(record["type"], record["response"])
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
