"""A string that will not show itself: the API key lives in one of these.

Its repr and str are masked, so it cannot leak through a log line, a notebook display,
or a traceback that prints local variables. Code that must send it calls ``reveal()``.
"""

from __future__ import annotations

__all__ = ["Secret", "redact"]

MASK = "********"


class Secret:
    """Holds a secret value; shows only a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a Secret cannot be empty")
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Never pickled: a pickled client must not carry the key to a rented box.
        raise TypeError("a Secret cannot be pickled; the API key never leaves this machine")


def redact(text: str, secret: Secret | None) -> str:
    """``text`` with every occurrence of the secret replaced by a mask."""
    if secret is None:
        return text
    return text.replace(secret.reveal(), MASK)
