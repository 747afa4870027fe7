"""Progress bars that stay tidy in a terminal and in Jupyter.

``tqdm`` here is tqdm's text bar (no ipywidgets needed).  In a terminal it is tqdm itself.
Inside a Jupyter kernel a text bar would draw into the cell's stderr stream, and a bar that
clears itself when done (``leave=False``, fit's per-epoch bars) leaves an empty stderr strip
behind in JupyterLab; so there it draws into one display output that is updated in place
and emptied when such a bar closes (a bar with ``leave=True`` keeps its last state).  Under
papermill / nbval / CI the bars are off anyway (``reprolib.train.show_progress``).
"""

from __future__ import annotations

from tqdm.std import tqdm as _tqdm

__all__ = ["tqdm", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter (ZMQ) kernel."""
    import sys

    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class _Sink:
    """A file that drops what tqdm writes itself (its carriage returns and newlines)."""

    def write(self, s):
        return len(s)

    def flush(self):
        pass


class tqdm(_tqdm):
    """``tqdm.std.tqdm`` that, in a Jupyter kernel, draws into an updatable display output
    instead of stderr (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        self._handle = None
        if not kwargs.get("disable") and in_notebook():
            from IPython.display import display

            kwargs["file"] = _Sink()
            self._handle = display({"text/plain": ""}, raw=True, display_id=True)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if self._handle is None:
            return super().display(msg, pos)
        self._handle.update({"text/plain": self.__str__() if msg is None else msg}, raw=True)
        return True
