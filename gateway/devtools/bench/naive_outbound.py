"""The naive outbound baseline for `gateway bench`: a plain loop, one provider call and one UPDATE
per message, one message after the other, no claim, no lease, no consent check, no retry.

    python -m gateway.devtools.bench.naive_outbound --dsn ... --api-base http://127.0.0.1:PORT --sid AC... --token ...

Sends every pending outbox row and prints JSON: {"sent": n, "failed": n, "seconds": s}.
"""
from __future__ import annotations

import argparse
import json
import time

import aiohttp
import asyncpg

from gateway.app.loop import runner
from gateway.devtools.bench.harness import OUR_NUMBER


async def send_all(dsn: str, api_base: str, sid: str, token: str) -> dict:
    conn = await asyncpg.connect(dsn)
    url = f"{api_base}/2010-04-01/Accounts/{sid}/Messages.json"
    sent = failed = 0
    try:
        rows = await conn.fetch("""SELECT o.id, o.message_id, o.to_address, m.body FROM outbox o
                                   JOIN messages m ON m.id = o.message_id
                                   WHERE o.state = 'pending' ORDER BY o.id""")
        started = time.perf_counter()
        async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(sid, token)) as http:
            for row in rows:
                form = {"To": row["to_address"], "From": OUR_NUMBER, "Body": row["body"]}
                async with http.post(url, data=form) as resp:
                    answer = await resp.json()
                ok = resp.status < 300
                sent += ok
                failed += not ok
                await conn.execute(
                    """WITH o AS (UPDATE outbox SET state = $2, updated_at = now() WHERE id = $1)
                       UPDATE messages SET status = $3, provider_message_id = $4, status_updated_at = now()
                       WHERE id = $5""",
                    row["id"], "done" if ok else "failed", "sent" if ok else "failed", answer.get("sid"),
                    row["message_id"])
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return {"sent": sent, "failed": failed, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--sid", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    with runner() as loop:     # the gateway's loop, so the comparison runs both on one
        print(json.dumps(loop.run(send_all(args.dsn, args.api_base, args.sid, args.token))))


if __name__ == "__main__":
    main()
