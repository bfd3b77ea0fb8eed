"""Conversation flows: declarative definitions in flows/*.yaml, run by a storage-free engine.

The worker loads a conversation's `ConversationState`, calls `Engine.turn` (or `Engine.begin` for a
new conversation), and writes the `TurnResult` in the same transaction. See engine.py for the order
in which a message is understood, loader.py for the definition format and its validation.
"""
from gateway.flows.actions import ActionCall, ActionContext, ActionRegistry
from gateway.flows.engine import (ConversationState, Engine, Escalation, Reply, TimerRequest, TurnInput, TurnResult,
                                  hand_back)
from gateway.flows.hours import BusinessHours
from gateway.flows.loader import FlowRegistry, flow_version, load_flow_file, load_flow_text
from gateway.flows.model import Flow, FlowError, UnknownFlowVersion

__all__ = [
    "ActionCall", "ActionContext", "ActionRegistry", "BusinessHours", "ConversationState", "Engine", "Escalation",
    "Flow", "FlowError", "FlowRegistry", "Reply", "TimerRequest", "TurnInput", "TurnResult", "UnknownFlowVersion",
    "flow_version", "hand_back", "load_flow_file", "load_flow_text",
]
