"""The SMTP listener holds a bounded number of sessions (and so of in-flight messages) at once."""
from __future__ import annotations

import asyncio

from gateway.channels.email.smtp_listener import InboundSmtpServer


async def test_sessions_beyond_the_cap_are_refused_with_a_temporary_421_until_one_ends():
    async def on_message(raw, mail_from, rcpt_tos):
        pass

    async with InboundSmtpServer(on_message, port=0, max_connections=3) as server:
        held = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220")
            held.append((reader, writer))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        refused = await asyncio.wait_for(reader.readline(), 10)
        closed = await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        held[0][1].write(b"QUIT\r\n")
        await held[0][1].drain()
        await asyncio.wait_for(held[0][0].read(), 10)      # the server ends that session

        async def greeted():
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            line = await asyncio.wait_for(r.readline(), 10)
            w.close()
            return line
        for _ in range(50):   # the freed slot is taken back once the server saw the session end
            again = await greeted()
            if again.startswith(b"220"):
                break
            await asyncio.sleep(0.1)
        for _, w in held[1:]:
            w.close()
    assert refused.startswith(b"421") and closed
    assert again.startswith(b"220")
