"""Attachment content for agents: stored copies, or fetched from the provider on first access.

Some channels store attachments by content hash when the message arrives (email); others deliver
media as ids or authenticated URLs: the first download goes to the provider, through the channel's
sender (`download_media`, with the field its media is named by, `media_source`) and the guarded
fetcher (gateway.infra.guarded_fetch: the provider's own media hosts only), and the bytes are kept by
content hash, so later downloads are local.

Only media a provider delivered with an inbound message are ever fetched. URLs that agents, flows
or integrations attach are links: providers receive them as links, and this route never requests
them (with our credentials or without).
"""
from __future__ import annotations

import hashlib

from aiohttp import web

from gateway.channels.errors import MediaDownloadError
from gateway.domain import blobs, inputs
from gateway.domain.types import Channel
from gateway.http.errors import ApiError
from gateway.http.inbox_common import READ, path_id, transaction
from gateway.http.keys import RUNTIME
from gateway.http.openapi import operation
from gateway.inbox.scope import visible_conversation
from gateway.infra.guarded_fetch import FetchRefused

MAX_INDEX = 100
CHANNEL_VALUES = frozenset(c.value for c in Channel)
# Customer files are served from our own origin, where the console's session lives: only raster
# images are shown inline; everything else downloads, and nothing may run (sandbox, no sniffing).
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, max-age=3600"}


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/conversations/{id}/messages/{message_id}/attachments/{index}", attachment)


@operation("Download one attachment of a message (stored copy, or fetched from the provider once)",
           roles=READ, produces="application/octet-stream",
           path_params={"message_id": {"type": "integer", "minimum": 1},
                        "index": {"type": "integer", "minimum": 0, "maximum": MAX_INDEX}},
           responses={200: None, 404: {"type": "object"}, 410: {"type": "object"}, 502: {"type": "object"}})
async def attachment(request: web.Request) -> web.Response:
    cid = path_id(request)
    message_id = path_id(request, "message_id")   # ASCII digits only, like every id in a path
    try:
        index = inputs.digits_int(request.match_info["index"], "index")
    except inputs.InputError:
        raise ApiError(404, "not_found", "no such attachment") from None
    async with transaction(request, *READ) as tx:
        await visible_conversation(tx.conn, tx.scope, cid)
        row = await blobs.message_attachments(tx.conn, cid, message_id)
        items = ((row["content"] or {}).get("attachments") or []) if row else []
        if not 0 <= index < len(items):
            raise ApiError(404, "not_found", "no such attachment")
        att = items[index]
        blob = None
        if att.get("content_ref"):
            blob = await blobs.blob(tx.conn, att["content_ref"])
    if blob is None and att.get("content_ref"):   # stored once, then removed by the retention limit
        raise ApiError(410, "expired", "this attachment was deleted after the retention period")
    if blob is None and row["direction"] != "in":
        raise ApiError(404, "not_stored", "this attachment is a link the gateway does not fetch", url=att.get("url"))
    if blob is None:
        data, content_type = await _fetch_from_provider(request, row["channel"], att)
        ref = "sha256:" + hashlib.sha256(data).hexdigest()
        rt = request.app[RUNTIME]
        async with rt.pool.acquire(timeout=5) as conn, conn.transaction():
            await blobs.keep_attachment(conn, message_id, index, ref, content_type, data)
        blob = {"data": data, "content_type": content_type}
    content_type = (blob["content_type"] or att.get("content_type") or "application/octet-stream").split(";")[0]
    content_type = content_type.strip().lower() or "application/octet-stream"
    return web.Response(body=blob["data"], content_type=content_type,
                        headers={**SAFE_HEADERS, "Content-Disposition": disposition(content_type, att.get("filename"))})


def disposition(content_type: str, filename: str | None) -> str:
    """Inline for raster images, a download for everything else; with the name when there is one."""
    kind = "inline" if content_type in INLINE_TYPES else "attachment"
    return kind + (f'; filename="{_ascii(filename)}"' if filename else "")


async def _fetch_from_provider(request: web.Request, channel: str, att: dict) -> tuple[bytes, str | None]:
    sender = request.app[RUNTIME].senders.get(Channel(channel)) if channel in CHANNEL_VALUES else None
    download = getattr(sender, "download_media", None)
    source = att.get(getattr(sender, "media_source", "url"))   # the field this provider's media is named by
    if download is None or not source:
        raise ApiError(404, "not_found", "this attachment is not stored and its provider cannot be asked")
    try:
        data, content_type = await download(source)
    except FetchRefused as exc:
        raise ApiError(404, "not_fetchable", f"this attachment's URL is not fetched: {exc}") from None
    except MediaDownloadError as exc:
        raise ApiError(502, "provider_error", f"the provider did not deliver the media: {exc}") from None
    return data, content_type or att.get("content_type")


def _ascii(name: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)

