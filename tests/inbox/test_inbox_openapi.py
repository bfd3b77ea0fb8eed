"""The API contract: /openapi.json describes every route, and schemathesis fuzzing the live app
finds no server error and no response that breaks the documented schema."""
from __future__ import annotations

import asyncio

import pytest
from inbox_support import ADMIN_TOKEN, seed_conversation

from gateway.http.openapi import undocumented

# per operation: valid inputs (checked against the schema) and invalid ones (must not be a 5xx)
POSITIVE_EXAMPLES, NEGATIVE_EXAMPLES = 20, 10
OUR_MODULES = ("gateway.http.inbox", "gateway.http.stream", "gateway.http.openapi")


async def test_document_lists_every_api_route_with_auth_and_errors(gw):
    rt, api = gw
    doc = await api.ok("GET", "/openapi.json", None)
    assert doc["openapi"].startswith("3.")
    from gateway.http.app import create_app
    app = create_app(rt)
    ours = {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.handler.__module__.startswith(OUR_MODULES)}
    builtin = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("POST", "/api/v1/inbound")}
    missing = set(undocumented(app)) & (ours | builtin)
    assert missing == set() and len(ours) > 35
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    conv = ops[("GET", "/api/v1/conversations")]
    assert conv["security"] == [{"bearer": []}] and {"200", "400", "401", "403"} <= set(conv["responses"])
    assert {p["name"] for p in conv["parameters"]} >= {"status", "mode", "assignee_id", "unassigned", "team_id",
                                                       "channel", "label", "waiting_since_before", "sort", "cursor"}
    assert "404" in ops[("POST", "/api/v1/conversations/{id}/claim")]["responses"]
    assert "security" not in ops[("GET", "/healthz")]
    assert ("POST", "/api/v1/inbound") in ops
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids))


def _fuzz(base_url: str, token: str, include) -> list[str]:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                     status_code_conformance)
    from schemathesis.core.failures import FailureGroup

    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    problems: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        op = result.ok()
        if not include(op.method.upper(), op.path):
            continue
        for mode, examples, checks in (
                (GenerationMode.POSITIVE, POSITIVE_EXAMPLES,
                 [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]),
                (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, [not_a_server_error])):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                response = case.call(base_url=base_url, headers=headers, timeout=10)
                case.validate_response(response, checks=checks, headers=headers)
            try:
                run()
            except Unsatisfiable:   # nothing to negate (no parameters, no body)
                continue
            except (AssertionError, FailureGroup) as exc:
                problems.append(f"{op.method.upper()} {op.path} ({mode.value}): {str(exc)[:1500]}")
    return problems


def _ours(rt) -> set[tuple[str, str]]:
    from gateway.http.app import create_app
    return {(r.method, r.resource.canonical) for r in create_app(rt).router.routes()
            if r.handler.__module__.startswith(OUR_MODULES)} | {("GET", "/healthz"), ("GET", "/readyz")}


async def _seed(api):
    team = await api.team("fuzz")
    await api.agent("fuzzer", [team])
    for i in range(3):
        await seed_conversation(api.pool, f"fuzz-{i}", team_id=team if i else None, messages=3)
    await api.ok("POST", "/api/v1/canned-responses", expect=201, json={"short_code": "hi", "body": "Hi {{contact.name}}"})


@pytest.mark.slow   # schemathesis
async def test_schemathesis_finds_no_server_errors_and_no_schema_violations(gw):
    """The inbox, realtime, OpenAPI and health operations."""
    pytest.importorskip("schemathesis", reason="schemathesis is a test extra: pip install schemathesis")
    rt, api = gw
    await _seed(api)
    ours = _ours(rt)
    problems = await asyncio.to_thread(_fuzz, api.url, ADMIN_TOKEN, lambda m, p: (m, p) in ours)
    assert problems == [], "\n\n".join(problems)


@pytest.mark.slow   # schemathesis
async def test_schemathesis_on_the_other_areas_operations(gw):
    """Every other documented operation (inbound API, events API, ...), same checks."""
    pytest.importorskip("schemathesis", reason="schemathesis is a test extra: pip install schemathesis")
    rt, api = gw
    status, _ = await api.call("POST", "/api/v1/inbound", json={"client_message_id": "m", "contact": {"phone": 5.5},
                                                                "text": "hi"})
    assert status == 400, "the case schemathesis found: a number where a phone string belongs"
    await _seed(api)
    ours = _ours(rt)
    problems = await asyncio.to_thread(_fuzz, api.url, ADMIN_TOKEN, lambda m, p: (m, p) not in ours)
    assert problems == [], "\n\n".join(problems)
