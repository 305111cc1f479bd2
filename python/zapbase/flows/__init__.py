"""Flows: versioned conversation graphs that run on WhatsApp.

graph        a published graph (blocks + edges) as the interpreter reads it
answers      typed answers: number, e-mail, phone, CPF, CNPJ, date, time, yes / no
render       WhatsApp shapes: variables in texts, titles cut to Meta's limits, choices as
             buttons, lists or pages of a list
interpreter  Turn: state + event in, messages / steps / actions / handoff / state out (no I/O)
engine       FlowEngine: the processor's flow route (begin turn in SQL, effects, commit)
"""

from __future__ import annotations

from zapbase.flows.graph import Graph
from zapbase.flows.interpreter import Input, Limits, State, Turn

__all__ = ["Graph", "Input", "Limits", "State", "Turn"]
