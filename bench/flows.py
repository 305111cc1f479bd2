"""Flow interpreter: one block step without I/O, on the demo tenant's order-tracking graph.

Each round plays the flow's typed turns in memory (start; a wrong CPF; a right one, the
http block answered with a canned order; a list choice) and divides each turn's time by
the blocks it ran. No database, no network: the interpreter alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import Context, Measure, percentile
from zapbase.flows.graph import Graph
from zapbase.flows.interpreter import Answer, Done, EffectResult, Input, Limits, Start, State, Turn

ROUNDS = 2000
SEED = Path(__file__).resolve().parents[1] / "seed" / "40_demo_flow.sql"
ORDER = {"found": True, "order": {"id": "PED-1042", "status": "em transporte", "eta": "05/12"}}


def _graph() -> Graph:
    text = SEED.read_text()
    return Graph.from_json(json.loads(text.split("$graph$")[1]))


def measure(ctx: Context) -> list[Measure]:
    graph, limits, context = _graph(), Limits(), {"contact.name": "Maria", "contact.wa_id": "5511988887777"}
    per_step: list[float] = []
    for _ in range(ROUNDS):
        state = State()
        for event in (Start(), Answer(Input(text="123")), Answer(Input(text="529.982.247-25")),
                      Answer(Input(text=None, reply_id="done"))):  # fmt: skip
            started = time.perf_counter()
            turn = Turn(graph, state, limits=limits, context=context)
            effect = turn.feed(event)
            while effect is not None:
                effect = turn.feed(Done(EffectResult(ok=True, value=ORDER)))
            per_step.append((time.perf_counter() - started) / max(len(turn.steps), 1))
            state = turn.state
        assert state.status == "completed", state  # the round really played the flow to its end
    return [Measure("flow interpreter step p50 (no I/O)", percentile(per_step, 50) * 1000, "ms",
                    goal="≤ 0.2 ms")]  # fmt: skip
