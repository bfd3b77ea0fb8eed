"""Loading a flow definition rejects each kind of mistake with a message naming file, state and problem."""
import textwrap

import pytest

from gateway.flows import FlowError, FlowRegistry, load_flow_text
from gateway.flows.loader import flow_version

GOOD = """
name: mini
start: menu
intents:
  order_status:
    examples: [where is my order]
slots:
  order_number:
    type: order_number
    prompt: "Order number?"
states:
  menu:
    say: "Hi!"
    options:
      - {id: a, title: "Order", goto: ask}
    on:
      - intent: order_status
        goto: ask
  ask:
    collect: order_number
    goto: done
  done:
    say: "Bye"
    do: [end]
"""


def load(text, name="mini"):
    return load_flow_text(name, textwrap.dedent(text), source=f"flows/{name}.yaml")


def broken(old, new):
    assert old in GOOD
    return GOOD.replace(old, new, 1)


def test_good_flow_loads_with_content_hash_version():
    flow = load(GOOD)
    assert flow.version == flow_version(textwrap.dedent(GOOD))
    assert set(flow.states) == {"menu", "ask", "done"}
    assert load(GOOD).version == flow.version


@pytest.mark.parametrize("text, state, problem", [
    (broken("        goto: ask\n  ask:", "        goto: nowhere\n  ask:"), "menu", "goto 'nowhere' is not a state"),
    (GOOD + "  orphan:\n    say: \"nobody comes here\"\n", "orphan", "unreachable"),
    (broken('    say: "Bye"\n    do: [end]\n', "    on:\n      - else: true\n        goto: menu\n"), "done",
     "says nothing"),
    (broken("      - intent: order_status\n        goto: ask\n",
            "      - intent: order_status\n        goto: ask\n      - intent: order_status\n        goto: done\n"),
     "menu", "duplicate trigger intent:order_status"),
    (broken("do: [end]", "do: [launch_rockets]"), "done", "unknown action 'launch_rockets'"),
    (broken("      - intent: order_status", "      - intent: teleport"), "menu", "unknown intent 'teleport'"),
    (broken("collect: order_number", "collect: shoe_size"), "ask", "unknown slot 'shoe_size'"),
    (broken("    goto: done\n  done:", "    goto: done\n    timeout: {after: 10 parsecs, goto: menu}\n  done:"),
     "ask", "bad duration"),
    (broken("      - intent: order_status\n        goto: ask\n",
            "      - intent: order_status\n        goto: ask\n        when: is_vip\n"), "menu", "unknown guard 'is_vip'"),
])
def test_each_mistake_names_file_state_and_problem(text, state, problem):
    with pytest.raises(FlowError) as err:
        load(text)
    message = str(err.value)
    assert "flows/mini.yaml" in message
    assert f"state '{state}'" in message
    assert problem in message
    assert err.value.state == state


def test_bad_regex_names_the_slot():
    with pytest.raises(FlowError, match=r"flows/mini.yaml: slot 'order_number': bad regex"):
        load(broken("    prompt: \"Order number?\"", "    pattern: '[A-Z'\n    prompt: \"Order number?\""))


def test_unknown_start_and_yaml_errors():
    with pytest.raises(FlowError, match="start state 'nope' is not a state"):
        load(GOOD.replace("start: menu", "start: nope"))
    with pytest.raises(FlowError, match="not valid YAML"):
        load("states: [unclosed")


def test_bad_business_hours_and_timezone():
    with pytest.raises(FlowError, match="unknown time zone"):
        load(GOOD + "global:\n  business_hours: {timezone: Mars/Olympus, monday: '09:00-17:00'}\n")
    with pytest.raises(FlowError, match="bad range"):
        load(GOOD + "global:\n  business_hours: {timezone: Europe/Berlin, monday: '9 to 5'}\n")


def test_option_leading_nowhere_and_automatic_loop():
    with pytest.raises(FlowError, match="option 'b' leads nowhere"):
        load(broken('      - {id: a, title: "Order", goto: ask}',
                    '      - {id: a, title: "Order", goto: ask}\n      - {id: b, title: "Other"}'))
    looping = GOOD + "  x:\n    say: x\n    goto: y\n  y:\n    say: y\n    goto: x\n"
    looping = looping.replace('      - {id: a, title: "Order", goto: ask}',
                              '      - {id: a, title: "Order", goto: ask}\n      - {id: b, title: "X", goto: x}')
    with pytest.raises(FlowError, match="automatic goto loop"):
        load(looping)


def test_named_guard_known_to_the_registry_is_accepted(tmp_path):
    text = broken("      - intent: order_status\n        goto: ask\n",
                  "      - intent: order_status\n        goto: ask\n        when: is_vip\n")
    (tmp_path / "mini.yaml").write_text(textwrap.dedent(text))
    registry = FlowRegistry.from_directory(tmp_path, guards=["is_vip"])
    assert registry.get("mini").states["menu"].on[0].when[0].guard == "is_vip"


def test_repo_flows_all_load():
    from gateway.infra.assets import shipped_flows_dir
    registry = FlowRegistry.from_directory(shipped_flows_dir())
    assert "support" in registry.names()
