"""Live deploys: POST /api/v1/flows/deploy validates the flows directory and every running process
takes the new versions (announced over Redis); conversations in progress stay on theirs, new ones
start on the new one; a bad file is refused with its file and line and the running version goes on."""
from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp

from gateway.devtools.testing import running_gateway, wait_for
from gateway.flows.cli import main as flows_cli

FLOWS = Path(__file__).resolve().parents[2] / "flows"


async def say(http, url, pool, token, external_id: str, cmid: str, text: str) -> list[str]:
    """The customer writes on the API channel; the bot's replies to that message."""
    async with http.post(f"{url}/api/v1/inbound", headers={"Authorization": f"Bearer {token}"},
                         json={"client_message_id": cmid, "contact": {"external_id": external_id},
                               "text": text}) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()

    async def processed():
        return await pool.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE id = $1",
                                   created["message_id"])
    await wait_for(processed, timeout=20)
    seq = await pool.fetchval("SELECT seq FROM messages WHERE id = $1", created["message_id"])
    return [r["body"] for r in await pool.fetch(
        "SELECT body FROM messages WHERE conversation_id = $1 AND direction = 'out' AND seq > $2 ORDER BY seq",
        created["conversation_id"], seq)]


async def test_a_deploy_reaches_every_process_and_a_bad_file_changes_nothing(settings, pool, clean, redis_client,
                                                                             tmp_path):
    from gateway.domain import auth

    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    s = settings.with_(default_handler="flow", flows_dir=flows)
    admin = {"Authorization": f"Bearer {s.admin_token}"}
    async with running_gateway(s) as (a, url_a), running_gateway(s, roles=("http",)) as (b, _url_b), \
            aiohttp.ClientSession() as http:
        async with pool.acquire() as conn:
            token = (await auth.create_token(conn, name="crm", role="integration"))[1]
        old = a.flow_handler.registry.get("support").version
        assert any("order number" in r for r in await say(http, url_a, pool, token, "ana", "a-1", "1"))

        text = (flows / "support.yaml").read_text()
        (flows / "support.yaml").write_text(text.replace("Hi! How can I help?", "Welcome! How can I help?")
                                            .replace("Sure! What's your order number?", "Order number, please?"))
        (flows / "routing.yaml").write_text("default: support\n")
        journey = flows / "journeys" / "onboarding.yaml"
        journey.write_text(journey.read_text().replace("priority: 5", "priority: 7"))
        async with http.post(f"{url_a}/api/v1/flows/deploy", headers=admin) as resp:
            assert resp.status == 200, await resp.text()
            deployed = await resp.json()
        new = deployed["flows"]["support"]
        assert new != old and set(deployed["journeys"]) == {"cart_recovery", "onboarding"}

        async def everywhere():
            return all(rt.flow_handler.registry.get("support").version == new
                       and rt.team_router.config.default == "support" for rt in (a, b))
        await wait_for(everywhere, timeout=20, message="the other process did not take the deploy")
        async with http.get(f"{_url_b}/api/v1/journeys", headers=admin) as resp:
            listed = {j["name"]: j for j in (await resp.json())["journeys"]}
        assert listed["onboarding"]["version"] == deployed["journeys"]["onboarding"]

        # a new conversation starts on the new version; the one in progress stays on its own
        assert any("Welcome!" in r for r in await say(http, url_a, pool, token, "ben", "b-1", "hi"))
        assert any("shipped" in r or "find" in r.lower() or "order" in r.lower()
                   for r in await say(http, url_a, pool, token, "ana", "a-2", "AB12345"))
        versions = dict(await pool.fetch(
            "SELECT i.address, c.flow_version FROM conversations c JOIN identities i ON i.contact_id = c.contact_id"))
        assert versions["ana"] == old and versions["ben"] == new

        # a broken file is refused with its file and line; everything keeps running on the last deploy
        deployments = await pool.fetchval("SELECT count(*) FROM deployments")
        broken = (flows / "support.yaml").read_text().replace("goto: anything_else", "goto: nowhere", 1)
        (flows / "support.yaml").write_text(broken)
        async with http.post(f"{url_a}/api/v1/flows/deploy", headers=admin) as resp:
            assert resp.status == 422
            error = (await resp.json())["error"]
        line = next(i for i, l in enumerate(broken.splitlines(), 1) if l.strip() == "order_found:")
        assert error["code"] == "invalid_definition"
        assert f"support.yaml:{line}: state 'order_found': goto 'nowhere' is not a state" in error["message"]
        assert await pool.fetchval("SELECT count(*) FROM deployments") == deployments
        assert a.flow_handler.registry.get("support").version == new
        assert any("Welcome!" in r for r in await say(http, url_a, pool, token, "cy", "c-1", "hi"))
        assert flows_cli(["deploy", "--dir", str(flows)]) == 1      # the CLI refuses it too, before connecting
