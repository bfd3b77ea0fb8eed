"""The satisfaction survey's answer: what counts as one, and taking it before the bot sees it.

After an agent resolves with the survey (`actions.resolve(csat_text=...)`), the customer's next
message, on any channel, within `GATEWAY_CSAT_WINDOW_HOURS`, is the answer when it reads as a
rating: a digit 1-5 ("5", "4/5", "5 stars"), a word ("great", "terrible", "genial", "gut"), or an
emoji (stars counted, faces and thumbs mapped). It is recorded on the rated episode with that
episode's agent and team, acknowledged once, and never reaches the bot. Anything else (or any
message after another one) goes on as usual, opening a new episode.
"""
from __future__ import annotations

import re
from datetime import timedelta

import asyncpg

from gateway.bot.turn import send_bot_reply
from gateway.domain import thread

WORDS = {
    5: ("great", "excellent", "amazing", "awesome", "perfect", "fantastic", "superb", "brilliant",
        "very good", "love it", "excelente", "genial", "perfecto", "sehr gut", "super", "top", "parfait"),
    4: ("good", "nice", "helpful", "bueno", "bien", "gut", "bon", "bom", "muy bien"),
    3: ("ok", "okay", "fine", "average", "meh", "so so", "so-so", "regular", "normal", "passable"),
    2: ("bad", "poor", "not good", "malo", "schlecht", "mauvais", "mal"),
    1: ("terrible", "awful", "horrible", "worst", "very bad", "useless", "pésimo", "pesimo", "furchtbar"),
}
EMOJI = {
    5: "😍🤩🥰😁😄💯❤️❤👏",
    4: "😀😃😊🙂👍☺",
    3: "😐😶🤷",
    2: "🙁😕😒👎",
    1: "😡😠😞😢😭🤬💩",
}
_WORD_SCORE = {w: score for score, words in WORDS.items() for w in words}
_DIGIT = re.compile(r"^\s*([1-5])(?:\s*(?:/\s*5|out of 5|stars?|⭐+))?\s*[.!]*\s*$", re.IGNORECASE)
_WORD_CLEAN = re.compile(r"[^\w\s'-]+", re.UNICODE)


def parse_rating(text: str) -> int | None:
    """1-5 when the text reads as a rating, else None ("5" yes; "5 orders missing" no)."""
    text = (text or "").strip()
    if not text or len(text) > 40:
        return None
    m = _DIGIT.match(text)
    if m:
        return int(m.group(1))
    stars = text.count("⭐") + text.count("🌟")
    if stars and not text.replace("⭐", "").replace("🌟", "").strip():
        return min(stars, 5)
    emoji = [score for score, chars in EMOJI.items() for ch in chars if ch in text]
    residue = _WORD_CLEAN.sub(" ", text).strip().lower()
    if emoji and not residue:
        return min(emoji)          # mixed faces: the least happy one
    words = residue.rstrip(" !.")
    for prefix in ("it was ", "it's ", "its ", "was ", "very very "):
        if words.startswith(prefix):
            words = words[len(prefix):]
    return _WORD_SCORE.get(words)     # with an emoji beside it, the word says it


async def open_survey(conn: asyncpg.Connection, conversation_id: int, seq: int,
                      window: timedelta) -> asyncpg.Record | None:
    """The survey this message (at `seq`) may answer: the latest one sent within `window`, whose
    episode has no answer yet, with no customer message between it and this one."""
    return await conn.fetchrow(
        """SELECT s.id, s.seq, e.id AS episode_id FROM messages s
           JOIN episodes e ON e.id = (s.content->'csat'->>'episode_id')::bigint
           WHERE s.conversation_id = $1 AND s.direction = 'out' AND s.content ? 'csat' AND s.seq < $2
             AND s.created_at > now() - $3::interval AND e.csat_score IS NULL
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = $1 AND m.direction = 'in'
                             AND m.seq > s.seq AND m.seq < $2)
           ORDER BY s.seq DESC LIMIT 1""", conversation_id, seq, window)


async def take_answer(conn: asyncpg.Connection, msg: asyncpg.Record, effects: thread.Effects, *,
                      settings) -> bool:
    """If `msg` answers an open survey: record it, thank the customer once, True (the bot must
    not see it). Otherwise False and nothing written."""
    if msg["kind"] != "message":
        return False
    score = parse_rating(msg["body"] or "")
    if score is None:
        return False
    survey = await open_survey(conn, msg["conversation_id"], msg["seq"],
                               timedelta(hours=settings.csat_window_hours))
    if survey is None:
        return False
    from gateway.inbox.actions import record_csat

    if not await record_csat(conn, msg["conversation_id"], survey["episode_id"], score, msg["id"], effects):
        return False
    await send_bot_reply(conn, msg["conversation_id"], settings.csat_thanks, settings=settings,
                         effects=effects, author_type="system", extra={"csat_ack": {"episode_id": survey["episode_id"]}})
    return True
