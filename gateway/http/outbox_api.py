"""Dead letters over the API (admins): list them, and requeue one after fixing the cause."""
from __future__ import annotations

from aiohttp import web

from gateway.http import inbox_schemas as S
from gateway.http.errors import ApiError
from gateway.http.inbox_common import ADMIN, bad, path_id, q_int, respond, transaction
from gateway.http.openapi import ID, TIME, Param, array, nullable, obj, operation
from gateway.inbox.actions import audit
from gateway.pipeline.outbox import deadletters

DEAD_LETTER = obj(
    ["outbox_id", "message_id", "conversation_id", "seq", "channel", "to_address", "attempts", "dead_at"],
    outbox_id=ID, message_id=ID, conversation_id=ID, seq=S.INT, channel=S.STR, to_address=S.STR, purpose=S.STR,
    attempts=S.INT, last_error=S.N_STR, error_code=S.N_STR, error_message=S.N_STR, created_at=TIME, dead_at=TIME)
DEAD_LETTER_PAGE = obj(["dead_letters", "next_before_id"], dead_letters=array(DEAD_LETTER),
                       next_before_id=nullable(ID))
REQUEUED = obj(["outbox_id", "message_id", "conversation_id", "state"], outbox_id=ID, message_id=ID,
               conversation_id=ID, state=S.STR)
FILTER_MAX = 100


def _filter(request: web.Request, name: str) -> str | None:
    value = request.query.get(name) or None
    if value is not None and (len(value) > FILTER_MAX or not value.isprintable()):
        raise bad(name, f"at most {FILTER_MAX} printable characters")
    return value


@operation("Dead letters: outbound messages given up after their last attempt, newest first", roles=ADMIN,
           query=(Param("channel", {"type": "string", "enum": S.CHANNELS}, "only this channel"),
                  Param("error_code", {"type": "string", "maxLength": FILTER_MAX}, "only this last error code"),
                  Param("before_id", ID, "the next page: next_before_id of the previous one"),
                  Param("limit", {"type": "integer", "minimum": 1, "maximum": 200})),
           responses={200: DEAD_LETTER_PAGE})
async def list_dead_letters(request: web.Request) -> web.Response:
    channel = _filter(request, "channel")
    if channel is not None and channel not in S.CHANNELS:
        raise bad("channel", f"one of {', '.join(S.CHANNELS)}")
    error_code = _filter(request, "error_code")
    before_id = q_int(request, "before_id", lo=1)
    limit = q_int(request, "limit", default=50, lo=1, hi=200)
    async with transaction(request, *ADMIN) as tx:
        return respond(await deadletters.list_dead(tx.conn, channel=channel, error_code=error_code,
                                                   before_id=before_id, limit=limit))


@operation("Requeue a dead letter: sent again from attempt one (409 when it is not dead)", roles=ADMIN,
           responses={200: REQUEUED})
async def requeue_dead_letter(request: web.Request) -> web.Response:
    outbox_id = path_id(request)
    async with transaction(request, *ADMIN) as tx:
        try:
            result = await deadletters.requeue(tx.conn, outbox_id, by=tx.actor.name)
        except deadletters.NotDead:
            raise ApiError(409, "not_dead", "this message is not dead-lettered") from None
        if result is None:
            raise ApiError(404, "not_found", "no such resource")
        await audit(tx.conn, tx.actor, "dead_letter_requeued", conversation_id=result["conversation_id"],
                    details={"outbox_id": outbox_id, "message_id": result["message_id"]})
        tx.effects.wake_outbox = True
    return respond(result)


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/dead-letters", list_dead_letters)
    app.router.add_post("/api/v1/dead-letters/{id}/requeue", requeue_dead_letter)
