"""Shared pieces of the property-based tests (hypothesis) of what comes from outside: odd
values, hostile strings, and mutations of real shapes at any depth.

Small by default so the suite stays fast; `make fuzz` sets ZAPBASE_FUZZ_EXAMPLES for a long run.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("ZAPBASE_FUZZ_EXAMPLES", "40"))

# For a test whose pool runs on a portal's thread: the pool's tasks draw from `random`
# (psycopg_pool jitters a connection's lifetime and reconnect delay) while hypothesis
# generates an example, which hypothesis takes for a strategy using `random` and warns of.
# The strategies here use none.
pool_on_another_thread = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

odd = st.one_of(
    st.none(),
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
)
words = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "Olá 😀👍🏽 👨‍👩‍👧",
            "مرحبا، أريد",
            "e\u0301",
            "\ufffd",
            "\u0000nul",
            "\ud800lone",
            "x" * 5000,
            "\u202eRTL",
            "💩" * 300,
        ]
    ),
)


def fuzz_settings() -> settings:
    """EXAMPLES examples, repeatable when small (CI), no deadline (a database is involved)."""
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=EXAMPLES <= 100,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_tree(draw: st.DrawFn, value: Any, max_mutations: int = 4) -> Any:
    """`value` (a real JSON shape) with up to `max_mutations` nodes anywhere in it dropped,
    retyped, replaced by a hostile string, or given an extra key."""
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(0, max_mutations))):
        path = draw(st.sampled_from(_paths(value)))
        how = draw(st.sampled_from(["drop", "retype", "words", "extra"]))
        if not path:
            if how == "extra" and isinstance(value, dict):
                value[draw(st.text(max_size=8))] = draw(st.one_of(odd, words))
            continue
        *parents, last = path
        parent = value
        for key in parents:
            parent = parent[key]
        if how == "drop":
            del parent[last]
        elif how == "retype":
            parent[last] = draw(odd)
        elif how == "words":
            parent[last] = draw(words)
        elif isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=8))] = draw(st.one_of(odd, words))
    return value
