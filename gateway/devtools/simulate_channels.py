"""`gateway simulate sms|whatsapp|whatsapp-cloud|email`: signed provider webhooks to a running gateway.

Signs with the same secrets the gateway verifies with (each channel's secrets.py): the configured
provider secrets, or in sandbox mode the stand-ins derived from the installation's secret key
(gateway.app.sandbox_secrets), so run it with the same environment / data dir as the gateway.
"""
from __future__ import annotations

import aiohttp

from gateway.app.settings import Settings
from gateway.channels.twilio.secrets import twilio_webhook_token
from gateway.channels.whatsapp.secrets import whatsapp_app_secret
from gateway.devtools.simulate_providers import (meta_inbound_payload, post_meta_webhook, post_twilio_inbound,
                                                 simulated_mailgun_form, twilio_inbound_params)


async def send(args, settings: Settings, url: str) -> tuple[int, str]:
    if args.channel in ("sms", "whatsapp"):
        whatsapp = args.channel == "whatsapp"
        ours = args.to or (settings.twilio_whatsapp_from if whatsapp else settings.twilio_from_number) or "+15550000000"
        params = twilio_inbound_params(args.from_, ours, args.text, whatsapp=whatsapp,
                                       account_sid=settings.twilio_account_sid or "AC" + "0" * 32)
        return await post_twilio_inbound(f"{url}/webhooks/twilio/inbound", params,
                                         twilio_webhook_token(settings),
                                         settings.public_url)
    if args.channel == "whatsapp-cloud":
        payload = meta_inbound_payload(args.from_.lstrip("+"), args.text,
                                       args.to or settings.whatsapp_phone_number_id or "100000000000000")
        return await post_meta_webhook(f"{url}/webhooks/whatsapp", payload,
                                       whatsapp_app_secret(settings))
    if args.channel == "email":
        form = simulated_mailgun_form(settings, sender=args.from_, recipient=args.to or settings.email_from
                                      or "support@example.com", subject=args.subject, text=args.text)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/webhooks/email/inbound", data=form) as resp:
                return resp.status, await resp.text()
    raise SystemExit(f"unknown channel {args.channel}")
