"""Every transcript case in flows/*.transcripts.yaml, one pytest test each (also: gateway flows test)."""
from pathlib import Path

import pytest

from gateway.flows.loader import FlowRegistry, flow_files
from gateway.flows.transcript import collect_cases, run_case

FLOWS = Path(__file__).parent
CASES = collect_cases(FLOWS)


@pytest.fixture(scope="module")
def registry():
    return FlowRegistry.from_directory(FLOWS)


def test_every_flow_has_transcripts():
    flows = {p.name.split(".")[0] for p in flow_files(FLOWS)}
    assert flows and flows <= {case.flow for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_transcript(case, registry):
    result = await run_case(case, registry)
    assert result.passed, "\n".join(result.failures)
