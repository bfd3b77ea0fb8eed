"""The naive baseline for `gateway bench`: what a first attempt at a webhook receiver looks like.

A minimal aiohttp app that verifies the same Twilio signature and INSERTs each message in its own
transaction per request, then answers TwiML. Same durability (commit before 2xx), no identity,
no thread, no seq, no dedupe, no queue.

    python -m gateway.devtools.bench.naive --port 8101 --dsn postgresql://... --token AUTH_TOKEN
"""
from __future__ import annotations

import argparse

import asyncpg
from aiohttp import web

from gateway.app.loop import loop_factory

from gateway.channels.twilio.adapter import EMPTY_TWIML, validate_signature

SCHEMA = """CREATE TABLE IF NOT EXISTS naive_messages (
    id bigserial PRIMARY KEY, sid text, sender text, body text, created_at timestamptz DEFAULT now())"""


def build_app(dsn: str, token: str, public_base: str) -> web.Application:
    app = web.Application()

    async def startup(app):
        app["pool"] = await asyncpg.create_pool(dsn, min_size=4, max_size=20)
        await app["pool"].execute(SCHEMA)

    async def cleanup(app):
        await app["pool"].close()

    async def inbound(request: web.Request) -> web.Response:
        form = await request.post()
        params = [(k, v) for k, v in form.items()]
        if not validate_signature(public_base + request.path_qs, params,
                                  request.headers.get("X-Twilio-Signature"), token):
            return web.Response(status=403)
        async with request.app["pool"].acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO naive_messages (sid, sender, body) VALUES ($1, $2, $3)",
                               form.get("MessageSid"), form.get("From"), form.get("Body"))
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/webhooks/twilio/inbound", inbound)
    app.router.add_get("/healthz", lambda r: web.json_response({"status": "ok"}))
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    factory = loop_factory()     # the gateway's loop, so the comparison runs both on one
    web.run_app(build_app(args.dsn, args.token, base), host="127.0.0.1", port=args.port,
                access_log=None, print=None, loop=factory() if factory else None)


if __name__ == "__main__":
    main()
