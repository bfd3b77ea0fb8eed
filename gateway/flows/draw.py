"""Diagrams of a flow: Mermaid stateDiagram text (for READMEs and GitHub), Graphviz DOT, SVG/PNG.

Drawn from the definition itself rather than from the machine, so labels speak the support lead's
language (menu titles, "no reply 10m", guards) and escalation shows as its own node. `via_transitions`
gives the plain diagram transitions' own Mermaid backend draws from the shared machine, for comparison.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gateway.flows.model import Flow, StateDef
from gateway.flows.nlu import HANDOFF_INTENT

ESCALATED = "to_a_person"


def _clean(text: str, limit: int = 48) -> str:
    text = " ".join(str(text).replace('"', "'").replace(":", " ").replace(";", ",").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def edges(flow: Flow) -> list[tuple[str, str, str]]:
    """(source, target, label) for every way a flow moves; [*] marks start and end."""
    result = [("[*]", flow.start, "")]
    titles = {}
    for state in flow.states.values():
        titles.update({(state.name, o.id): o.title for o in state.options})
    for state in flow.states.values():
        for trigger in state.on + state.timeouts:
            if trigger.goto is None:
                continue
            label = trigger.label()
            if trigger.kind == "choice":
                label = f"option {titles.get((state.name, trigger.key), trigger.key)}"
            result.append((state.name, trigger.goto, _clean(label)))
        if state.done is not None:
            label = f"{state.collect} given" if state.collect else ""
            result.append((state.name, state.done.goto, label))
        if state.cancel:
            result.append((state.name, state.cancel, "cancel"))
        if state.collect:
            slot = flow.slots[state.collect]
            target = ESCALATED if slot.on_fail == "escalate" else slot.on_fail
            result.append((state.name, target, f"{slot.max_attempts} wrong answers"))
        if any(a.name == "escalate" for a in state.do):
            result.append((state.name, ESCALATED, "escalate"))
        if state.final:
            result.append((state.name, "[*]", "end"))
    return result


def _global_note(flow: Flow) -> list[str]:
    lines = [f"ask for a person -> {flow.config.handoff.state or 'escalate'}",
             f"{flow.config.misunderstanding_limit} misunderstandings -> escalate"]
    for trigger in flow.config.on:
        if trigger.kind == "intent" and trigger.key == HANDOFF_INTENT:
            continue
        lines.append(_clean(f"{trigger.label()} -> {trigger.goto or 'reply, stay'}", 60))
    return lines


def _describe(state: StateDef) -> str:
    if state.collect:
        return f"asks for {state.collect}"
    if state.say:
        return _clean(state.say.text, 40)
    if state.do:
        return "runs " + ", ".join(a.name for a in state.do)
    return ""


def to_mermaid(flow: Flow) -> str:
    lines = ["---", f"title: {flow.name} ({flow.version})", "---", "stateDiagram-v2"]
    uses_escalation = any(target == ESCALATED for _, target, _ in edges(flow))
    for state in flow.states.values():
        desc = _describe(state)
        lines.append(f'    state "{state.name}<br/><small>{desc}</small>" as {state.name}' if desc
                     else f"    {state.name}")
    if uses_escalation:
        lines.append(f'    state "a person (agent queue)" as {ESCALATED}')
    for source, target, label in edges(flow):
        lines.append(f"    {source} --> {target}" + (f" : {label}" if label else ""))
    lines.append(f"    note right of {flow.start}")
    lines.extend(f"        {line}" for line in ["everywhere:"] + _global_note(flow))
    lines.append("    end note")
    return "\n".join(lines) + "\n"


def to_dot(flow: Flow) -> str:
    lines = [f'digraph "{flow.name}" {{', "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];',
             '  "__start" [shape=point, width=0.2]; "__end" [shape=doublecircle, label="", width=0.2];',
             f'  "{ESCALATED}" [label="a person\\n(agent queue)", shape=box, style="rounded,filled", fillcolor="#fde2c8"];']
    for state in flow.states.values():
        desc = _describe(state)
        lines.append(f'  "{state.name}" [label="{state.name}' + (f'\\n{desc}' if desc else "") + '"];')
    for source, target, label in edges(flow):
        source = "__start" if source == "[*]" else source
        target = "__end" if target == "[*]" else target
        lines.append(f'  "{source}" -> "{target}"' + (f' [label="{label}"]' if label else "") + ";")
    note = "\\l".join(["everywhere:"] + _global_note(flow)) + "\\l"
    lines.append(f'  "__global" [shape=note, label="{note}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def via_transitions(flow: Flow) -> str:
    """The diagram transitions' Mermaid backend draws for this flow's states and triggers."""
    from transitions.extensions.diagrams import GraphMachine

    machine = GraphMachine(model=None, states=list(flow.states), initial=flow.start, auto_transitions=False,
                           graph_engine="mermaid", title=f"{flow.name} ({flow.version})", show_conditions=True)
    for trigger_name, event in flow.machine.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                if transition.dest is not None:
                    machine.add_transition(trigger_name, source, transition.dest)

    class _Model:
        pass

    model = _Model()
    machine.add_model(model)
    return model.get_graph().draw(None)


def render_graphviz(dot_text: str, out: Path) -> bool:
    """Write SVG/PNG with Graphviz `dot`; False when `dot` is not on PATH."""
    dot = shutil.which("dot")
    if dot is None:
        return False
    fmt = out.suffix.lstrip(".").lower()
    subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=dot_text.encode(), check=True)
    return True
