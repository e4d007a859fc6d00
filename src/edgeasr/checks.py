"""Value checks shared by the validators of user settings (WeNet's train.yaml, hb_mapper's config)."""

from typing import Any, Iterable


def is_one_of(value: Any, choices: Iterable[Any]) -> bool:
    """`value` equals one of `choices` with the same type: YAML's `1` is not `True`, `1.0` is not `1`."""
    return any(value == choice and type(value) is type(choice) for choice in choices)
