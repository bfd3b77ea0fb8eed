"""The satisfaction survey's answer: recorded on the rated episode and agent, acknowledged once,
never seen by the bot; anything else goes to the bot with fresh per-episode counters; CSAT in
metrics/summary overall and per agent, team and channel."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest
from inbox_support import Api

from gateway.devtools.fakes.twilio import FakeTwilio
from gateway.devtools.simulate_providers import post_twilio_inbound, twilio_inbound_params
from gateway.devtools.testing import running_gateway, wait_for
from gateway.domain.timers import ManualClock
from gateway.inbox.csat import parse_rating

FLOWS = Path(__file__).resolve().parents[2] / "flows"
OUR_SMS, OUR_WA, CUSTOMER = "+15550001111", "+15550002222", "+14155550100"
MONDAY_10_BERLIN = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, score", [
    ("5", 5), (" 4/5 ", 4), ("3 stars", 3), ("1.", 1), ("great", 5), ("Great!", 5), ("it was good", 4),
    ("ok", 3), ("terrible", 1), ("genial", 5), ("😍", 5), ("👍", 4), ("👎", 2), ("⭐⭐⭐⭐", 4), ("great 😀", 5),
    ("hi", None), ("5 orders are missing", None), ("6", None), ("0", None), ("", None),
    ("where is my order 12345?", None), ("I want a refund, this was a terrible experience", None),
])
def test_what_reads_as_a_rating(text, score):
    assert parse_rating(text) == score


@pytest.fixture
async def bot(settings, pool, inbox_clean, redis_client):
    async with FakeTwilio() as fake:
        s = settings.with_(default_handler="flow", twilio_account_sid=fake.account_sid,
                           twilio_auth_token=fake.auth_token, twilio_from_number=OUR_SMS,
                           twilio_whatsapp_from=OUR_WA, twilio_api_base=fake.base_url, flows_dir=FLOWS)
        async with running_gateway(s, clock=ManualClock(MONDAY_10_BERLIN)) as (rt, url), \
                aiohttp.ClientSession() as http:
            yield rt, Api(http, url, pool), fake


async def customer(url, fake, pool, text: str, *, whatsapp: bool = False) -> None:
    before = await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'")
    status, _ = await post_twilio_inbound(f"{url}/webhooks/twilio/inbound",
                                          twilio_inbound_params(CUSTOMER, OUR_WA if whatsapp else OUR_SMS, text,
                                                                whatsapp=whatsapp), fake.auth_token)
    assert status == 200

    async def processed():
        return await pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'in' "
                                   "AND processed_at IS NOT NULL") == before + 1
    await wait_for(processed, timeout=20)


async def sent_bodies(pool, after_seq: int = 0) -> list[str]:
    return [r["body"] for r in await pool.fetch(
        "SELECT body FROM messages WHERE direction = 'out' AND seq > $1 ORDER BY seq", after_seq)]


async def last_seq(pool) -> int:
    return await pool.fetchval("SELECT coalesce(max(seq), 0) FROM messages")


async def test_the_survey_answer_is_recorded_acknowledged_once_and_never_reaches_the_bot(bot):
    rt, api, fake = bot
    team = await api.team("support")
    agent_id, agent = await api.agent("eva", [team])
    # the bot does not understand twice (its limit): escalated to the support team
    await customer(api.url, fake, api.pool, "hi")
    await customer(api.url, fake, api.pool, "blorp")
    await customer(api.url, fake, api.pool, "zzzkrr")
    conv = await api.pool.fetchrow("SELECT id, mode, team_id FROM conversations")
    assert conv["mode"] == "agent" and conv["team_id"] == team
    cid = conv["id"]
    first_episode = await api.pool.fetchval("SELECT current_episode_id FROM conversations")
    await api.ok("POST", f"/api/v1/conversations/{cid}/claim", agent)
    await api.ok("POST", f"/api/v1/conversations/{cid}/messages", agent, expect=201, json={"text": "Fixed it!"})
    resolved = await api.ok("POST", f"/api/v1/conversations/{cid}/resolve", agent, json={"csat": True})
    assert resolved["csat"]["sent"] is True

    # the answer comes on WhatsApp, in words and an emoji
    mark = await last_seq(api.pool)
    await customer(api.url, fake, api.pool, "great 😀", whatsapp=True)
    assert await sent_bodies(api.pool, mark) == ["Thank you for your feedback!"]
    episode = await api.pool.fetchrow("SELECT * FROM episodes WHERE id = $1", first_episode)
    assert (episode["csat_score"], episode["csat_agent_id"], episode["csat_team_id"]) == (5, agent_id, team)
    conv = await api.pool.fetchrow("SELECT status, current_episode_id FROM conversations")
    assert conv["status"] == "resolved" and conv["current_episode_id"] == first_episode, "no new episode"
    detail = await api.ok("GET", f"/api/v1/conversations/{cid}", agent)
    assert detail["episode"]["csat_score"] == 5

    # a second rating is not an answer any more: the bot has it, in a new episode with fresh
    # counters, so one misunderstanding does not re-escalate
    mark = await last_seq(api.pool)
    await customer(api.url, fake, api.pool, "5")
    bodies = await sent_bodies(api.pool, mark)
    assert "Thank you for your feedback!" not in bodies and any("didn't get that" in b for b in bodies), bodies
    conv = await api.pool.fetchrow("SELECT mode, current_episode_id, flow_data FROM conversations")
    assert conv["mode"] == "bot" and conv["current_episode_id"] != first_episode
    assert conv["flow_data"]["misunderstandings"] == 1
    assert await api.pool.fetchval("SELECT count(*) FROM episodes WHERE csat_score IS NOT NULL") == 1

    summary = await api.ok("GET", "/api/v1/metrics/summary", params={"since": "2000-01-01T00:00:00Z"})
    csat = summary["csat"]
    assert (csat["count"], csat["average"]) == (1, 5.0)
    assert csat["distribution"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}
    assert [(r["agent_id"], r["name"], r["count"]) for r in csat["per_agent"]] == [(agent_id, "eva", 1)]
    assert [(r["team_id"], r["name"], r["average"]) for r in csat["per_team"]] == [(team, "support", 5.0)]
    assert [(r["channel"], r["count"]) for r in csat["per_channel"]] == [("sms", 1)]


async def test_anything_else_after_the_survey_goes_to_the_bot_and_the_window_closes(bot):
    rt, api, fake = bot
    _, agent = await api.agent("eva")
    await customer(api.url, fake, api.pool, "i want to talk to a human")
    cid = await api.pool.fetchval("SELECT id FROM conversations")
    await api.ok("POST", f"/api/v1/conversations/{cid}/resolve", agent, json={"csat": True})
    mark = await last_seq(api.pool)
    await customer(api.url, fake, api.pool, "hi")             # not a rating: the bot answers
    assert await api.pool.fetchval("SELECT count(*) FROM messages WHERE direction = 'out' AND author_type = 'bot' "
                                   "AND seq > $1", mark) >= 1
    assert await api.pool.fetchval("SELECT count(*) FROM episodes WHERE csat_score IS NOT NULL") == 0

    # a survey older than the window is not answered by a late "5"
    await api.ok("POST", f"/api/v1/conversations/{cid}/claim", agent)
    await api.ok("POST", f"/api/v1/conversations/{cid}/resolve", agent, json={"csat": True})
    await api.pool.execute("UPDATE messages SET created_at = now() - interval '4 days' WHERE content ? 'csat'")
    mark = await last_seq(api.pool)
    await customer(api.url, fake, api.pool, "5")
    assert "Thank you for your feedback!" not in await sent_bodies(api.pool, mark)
    assert await api.pool.fetchval("SELECT count(*) FROM episodes WHERE csat_score IS NOT NULL") == 0
    summary = await api.ok("GET", "/api/v1/metrics/summary")
    assert summary["csat"] == {"count": 0, "average": None,
                               "distribution": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0},
                               "per_agent": [], "per_team": [], "per_channel": []}
