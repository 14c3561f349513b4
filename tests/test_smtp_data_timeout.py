"""Handlers after DATA that run past the listener's `data_processing_timeout`: the client gets
`451 4.4.5` at the final dot, nothing is stored, and the session goes on."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
import pytest

from tests.smtp_rig import MESSAGE, smtp_rig

SLOW_POLICY = """
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  if msg:recipient().user == 'slow' then
    kumo.sleep(30)
  end
end)
"""


async def test_handlers_past_data_processing_timeout_get_451_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    async for rig in smtp_rig(tmp_path, SLOW_POLICY, data_processing_timeout=0.5):
        client = rig.client()
        await client.connect()
        await client.ehlo(hostname="client.example")
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await client.sendmail("a@example.com", ["slow@example.net"], MESSAGE)
        assert (caught.value.code, caught.value.message) == (
            451,
            "4.4.5 data_processing_timeout exceeded (rx)",
        )
        assert list(rig.spool.enumerate()) == []
        # the same session takes the next message
        await client.sendmail("a@example.com", ["quick@example.net"], MESSAGE)
        await client.quit()
        (stored,) = rig.spool.enumerate()
        assert stored.recipient == "quick@example.net"
        receptions = [r for r in await rig.records() if r["type"] == "Reception"]
        assert [r["recipient"] for r in receptions] == ["quick@example.net"]
