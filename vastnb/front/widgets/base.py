"""The base of vastnb's widgets: a model in traits, drawn as ipywidgets or as text."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from traitlets import HasTraits

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["View", "Column", "rich_frontend", "describe"]


def rich_frontend() -> bool:
    """True when widgets can be drawn: ipywidgets imports and an ipykernel shell runs."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    # Not imported here: if no kernel loaded it, this is no kernel. A terminal IPython
    # or plain Python has no frontend to draw a widget in.
    zmqshell = sys.modules.get("ipykernel.zmqshell")
    return zmqshell is not None and isinstance(get_ipython(), zmqshell.ZMQInteractiveShell)


def describe(error: BaseException) -> str:
    """``ProvisionError: Could not launch ...``: the error's type and first line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class View(HasTraits):
    """A model in traits, drawn by an ipywidgets view (rich) or as its text repr."""

    def __init__(self, rich: bool | None, **traits: Any) -> None:
        super().__init__(**traits)
        self.rich: bool = rich_frontend() if rich is None else rich
        #: The ipywidgets view, to show or compose; None in text mode.
        self.widget: ipywidgets.Box | None = None
        if self.rich:
            self.widget = self._build()
            self.observe(lambda _change: self._draw())
            self._draw()

    def _build(self) -> ipywidgets.Box:
        raise NotImplementedError

    def _draw(self) -> None:
        raise NotImplementedError

    def display(self) -> None:
        """Show it under the current cell: the widget, or else its text."""
        from IPython.display import display

        display(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # The widget's own text/plain is its traits, cut at 110 characters: ours is kept.
        bundle = getattr(self.widget, "_repr_mimebundle_", None)
        data = dict(bundle()) if callable(bundle) else {}
        data["text/plain"] = repr(self)
        return data

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class Column(View):
    """Views shown one above the other, each drawing itself; :meth:`refresh` re-reads them in
    order, and the text is theirs, one after another."""

    def __init__(self, parts: list[Any], rich: bool | None) -> None:
        self.parts = parts
        super().__init__(rich)

    def refresh(self) -> None:
        for part in self.parts:
            part.refresh()

    def __repr__(self) -> str:
        return "\n".join(repr(part) for part in self.parts)

    def _build(self) -> ipywidgets.Box:
        import ipywidgets as w

        return w.VBox([part.widget for part in self.parts])

    def _draw(self) -> None:
        pass  # its parts draw themselves
