"""`gateway simulate`: post a real, signed inbound message to a running gateway.

Lets a newcomer try a channel with no provider account: the request is exactly what the provider
would send (form or JSON body, signature header computed with the configured secret).
"""
from __future__ import annotations

import uuid

import aiohttp

from gateway.app.settings import Settings

# what `gateway simulate CHANNEL` can post (the API channel here, the providers' webhooks in simulate_channels)
CHANNELS = ("sms", "whatsapp", "whatsapp-cloud", "email", "api")


async def simulate(args, settings: Settings) -> int:
    url = (args.url or settings.base_url).rstrip("/")
    if args.channel == "api":
        if not settings.admin_token:
            print("set GATEWAY_ADMIN_TOKEN (the same value the gateway runs with)")
            return 2
        body = {"client_message_id": uuid.uuid4().hex, "contact": {"external_id": args.from_},
                "text": args.text}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/v1/inbound", json=body,
                                 headers={"Authorization": f"Bearer {settings.admin_token}"}) as resp:
                print(resp.status, await resp.text())
                return 0 if resp.status < 300 else 1
    from gateway.devtools import simulate_channels

    status, text = await simulate_channels.send(args, settings, url)
    print(status, text)
    return 0 if status < 300 else 1
