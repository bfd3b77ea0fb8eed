"""The contact's preference page: `GET /preferences/{token}` shows each channel and purpose the
contact can be reached on with its current state; the customer changes them and saves (a plain form,
no JavaScript), or stops all marketing, or every message, with one button. The token is a signed,
expiring link per contact (`link_for`); every change is recorded by gateway.domain.consent with the page
as proof (what was shown, the IP, the browser)."""
from __future__ import annotations

import html

from aiohttp import web

from gateway.app.log import get_logger
from gateway.domain import consent, contacts
from gateway.domain.preferences import read_token
from gateway.http.keys import RUNTIME

log = get_logger(__name__)

SOURCE = "preference page"
CHANNEL_NAMES = consent.CHANNEL_TITLES
PURPOSE_NAMES = {"marketing": "Offers and news", "transactional": "Receipts, reminders and account notices"}
PURPOSES = ("marketing", "transactional")


async def _rows(conn, settings, contact_id: int) -> list[dict]:
    return [r for r in await consent.contact_state(conn, contact_id, settings.consent_regimes)
            if r["purpose"] in PURPOSES]


def _page(title: str, body: str, status: int = 200) -> web.Response:
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
 body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}}
 main{{max-width:34rem;margin:0 auto;padding:1.5rem 1rem}}
 .card{{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:1.25rem;margin-bottom:1rem}}
 h1{{font-size:1.4rem;margin:0 0 .5rem}} h2{{font-size:1.05rem;margin:0 0 .75rem}}
 label{{display:flex;gap:.75rem;align-items:center;padding:.6rem 0;border-top:1px solid #eceef2;font-size:1rem}}
 input[type=checkbox]{{width:1.4rem;height:1.4rem;flex:none}}
 button{{font:inherit;border:0;border-radius:8px;padding:.8rem 1rem;width:100%;margin-top:.75rem;cursor:pointer}}
 .primary{{background:#2453d6;color:#fff}} .quiet{{background:#eceef2;color:#1d2330}}
 .note{{background:#e7f6ec;color:#14532d;border-radius:8px;padding:.75rem;margin-bottom:1rem}}
 small{{color:#5b6474}}
 fieldset.card{{border:0;min-width:0}} legend{{float:left;width:100%;padding:0}} legend+label{{clear:both}}
</style></head>
<body><main>{body}</main></body></html>"""
    return web.Response(text=doc, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                            "form-action 'self'; frame-ancestors 'none'"})


def _invalid() -> web.Response:
    return _page("Link expired", '<div class="card"><h1>This link has expired or is not valid</h1>'
                 "<p>Ask us for a new one: reply to any of our messages, or reply STOP to a text message.</p></div>",
                 status=404)


async def _contact(request: web.Request) -> int | None:
    rt = request.app[RUNTIME]
    contact_id = read_token(rt.settings.secret_key, request.match_info["token"])
    if contact_id is None:
        return None
    return contact_id if await contacts.is_live(rt.pool, contact_id) else None


async def show(request: web.Request) -> web.Response:
    contact_id = await _contact(request)
    if contact_id is None:
        return _invalid()
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn:
        rows = await _rows(conn, rt.settings, contact_id)
    saved = '<p class="note" role="status">Your choices are saved.</p>' if request.query.get("saved") else ""
    groups = []
    for channel in dict.fromkeys(r["channel"] for r in rows):
        boxes = "".join(
            f'<label><input type="checkbox" name="{r["channel"]}.{r["purpose"]}" value="on"'
            f'{" checked" if r["allowed"] else ""}> {html.escape(PURPOSE_NAMES[r["purpose"]])}</label>'
            for r in rows if r["channel"] == channel)
        groups.append(f'<fieldset class="card"><legend><h2>'
                      f'{html.escape(CHANNEL_NAMES.get(channel, channel))}</h2></legend>{boxes}</fieldset>')
    body = (f'<h1>Your message preferences</h1>{saved}'
            '<p><small>Choose what we may send you on each channel. Replies to messages you send us are '
            'not affected.</small></p>'
            f'<form method="post">{"".join(groups) or "<p class=card>We have no address of yours.</p>"}'
            '<button class="primary" type="submit" name="action" value="save">Save my choices</button>'
            '<button class="quiet" type="submit" name="action" value="no_marketing">'
            'Unsubscribe from all marketing</button>'
            '<button class="quiet" type="submit" name="action" value="stop_all">Stop all messages</button>'
            '</form>')
    return _page("Your message preferences", body)


async def save(request: web.Request) -> web.Response:
    contact_id = await _contact(request)
    if contact_id is None:
        return _invalid()
    rt = request.app[RUNTIME]
    form = await request.post()
    action = form.get("action", "save")
    proof = {"page": "/preferences", "action": action, "ip": request.remote,
             "user_agent": (request.headers.get("User-Agent") or "")[:300]}
    async with rt.pool.acquire() as conn, conn.transaction():
        if action == "no_marketing":
            await consent.record_for_contact(conn, contact_id, channel=consent.ANY_CHANNEL, purpose=consent.MARKETING,
                                             granted=False, source=SOURCE, proof=proof)
        elif action == "stop_all":
            await consent.record_for_contact(conn, contact_id, channel=consent.ANY_CHANNEL, purpose=consent.ALL,
                                             granted=False, source=SOURCE, proof=proof)
        else:
            for row in await _rows(conn, rt.settings, contact_id):
                wanted = form.get(f"{row['channel']}.{row['purpose']}") == "on"
                if wanted != row["allowed"]:
                    # an explicit yes also lifts an earlier "stop everything" on that channel
                    purposes = [row["purpose"]] + ([consent.ALL] if wanted and row["reason"] == "opted_out" else [])
                    for purpose in purposes:
                        await consent.record_for_contact(
                            conn, contact_id, channel=row["channel"], purpose=purpose, granted=wanted, source=SOURCE,
                            proof={**proof, "shown": f"{CHANNEL_NAMES[row['channel']]}: "
                                                     f"{PURPOSE_NAMES[row['purpose']]}"})
    log.info("preferences saved", contact_id=contact_id, action=action)
    raise web.HTTPSeeOther(f"{request.path}?saved=1")


def register(app: web.Application) -> None:
    app.router.add_get("/preferences/{token}", show)
    app.router.add_post("/preferences/{token}", save)
