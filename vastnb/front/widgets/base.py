"""The base of vastnb's widgets: a model in traits, drawn as ipywidgets or as text."""

from __future__ import annotations

import atexit
import html
import sys
import time
from typing import TYPE_CHECKING, Any

from traitlets import HasTraits

if TYPE_CHECKING:
    import ipywidgets
    from IPython.display import DisplayHandle

__all__ = ["View", "Column", "rich_frontend", "describe", "shown", "static_html"]

#: Every live view displayed in this kernel, with its display: see :func:`shown`.
_SHOWN: list[tuple[View, DisplayHandle]] = []


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


def shown(view: View, handle: DisplayHandle | None) -> None:
    """Remember a live view's display: when the kernel exits, each is replaced in place by
    what its view last showed, as static text and HTML, and a one-line note that it is no
    longer live. A notebook saved after that keeps the final state rather than a widget that
    a later kernel cannot find ("Error displaying widget: model not found")."""
    if handle is None:
        return
    if not _SHOWN:
        atexit.register(_kernel_exit)
    _SHOWN.append((view, handle))


def _end(views: list[tuple[View, DisplayHandle]], note: str) -> None:
    for view, handle in views:
        bundle = view.ended(note)
        if bundle is None:
            continue
        try:
            handle.update(bundle, raw=True)
        except Exception:  # noqa: BLE001 - a view that cannot say it ended must not stop the others
            continue


def _kernel_exit() -> None:
    _end(_SHOWN, f"live until its kernel stopped at {time.strftime('%H:%M:%S')}: run the cell again for a live view")
    _SHOWN.clear()


def static_html(body: str) -> str:
    """``body`` as an output's HTML: its dollar signs ($0.205/h ... $0.0012) are prices, not
    the LaTeX that JupyterLab's MathJax would typeset between them."""
    return f"<div class='tex2jax_ignore mathjax_ignore'>{body}</div>"


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

    def html(self) -> str:
        """What it shows, as static HTML: the fallback of a widget frontend's absence."""
        return f"<pre>{html.escape(repr(self))}</pre>"

    def ended(self, note: str) -> dict[str, str] | None:
        """Its display once the kernel is gone: what it last showed, and ``note``."""
        note_html = f"<div style='color:gray;font-size:0.9em;font-style:italic'>{html.escape(note)}</div>"
        return {"text/plain": f"{self!r}\n({note})", "text/html": static_html(self.html() + note_html)}

    def end(self, note: str) -> None:
        """Replace each of its displays in place by what it shows now and ``note``, as
        static text and HTML: its live part is over."""
        own = [(view, handle) for view, handle in _SHOWN if view is self]
        _SHOWN[:] = [(view, handle) for view, handle in _SHOWN if view is not self]
        _end(own, note)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # The widget's own text/plain is its traits, cut at 110 characters: ours is kept.
        bundle = getattr(self.widget, "_repr_mimebundle_", None)
        data = dict(bundle()) if callable(bundle) else {}
        data["text/plain"], data["text/html"] = repr(self), static_html(self.html())
        return data

    def _ipython_display_(self) -> None:
        # Displayed (rather than returned as the cell's result) with a display id, so that
        # the kernel's exit can replace it: see shown().
        from IPython.display import display

        handle = display(self._repr_mimebundle_(), raw=True, display_id=self.rich)
        if self.rich:
            shown(self, handle)

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

    def html(self) -> str:
        return "".join(part.html() for part in self.parts)

    def _build(self) -> ipywidgets.Box:
        import ipywidgets as w

        return w.VBox([part.widget for part in self.parts])

    def _draw(self) -> None:
        pass  # its parts draw themselves
