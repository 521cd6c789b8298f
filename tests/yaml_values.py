"""Hypothesis strategies for what a YAML file can hold, hostile strings included."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

HOSTILE = ("a b; rm -rf /", "$(id)", "-oProxyCommand=x", "../../etc/passwd", "\n")


def yaml_values(likely: Sequence[str] = (), max_leaves: int = 12) -> Any:
    """Scalars, lists and mappings as YAML gives them, with ``likely`` strings (the
    file's own vocabulary) and hostile ones mixed in."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.sampled_from([*likely, *HOSTILE]),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=12) | scalars, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )
