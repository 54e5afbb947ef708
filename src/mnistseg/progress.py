"""Progress through a training epoch, for people watching.

A bar in a terminal or a Jupyter notebook (``tqdm.auto`` picks the widget there), and plain
lines every ~10% of the epoch when the output goes to a file or a pipe, where a bar cannot
be redrawn. In a notebook without ipywidgets (the ``[notebook]`` extra) there is no widget to
draw: plain lines again, and a warning that names the extra.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable

from tqdm.auto import tqdm


def notebook_widgets_installed() -> bool:
    """Whether ipywidgets imports: tqdm's notebook bar is one of its widgets."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class EpochProgress:
    """Progress through one epoch: a bar in a terminal or in Jupyter, plain lines elsewhere.

    With output going to a file or a pipe (no terminal to redraw a bar in), it prints one
    line each time another ~10% of the epoch's images is done: images, images/s, the mean
    loss since the last line, and the time left at that pace.

    Args:
        total: the epoch's training images.
        description: what is progressing, e.g. ``"epoch 1/6"``.
        log: where plain lines go.
        enabled: False for a process that must stay quiet (torchrun ranks other than 0).
    """

    def __init__(self, total: int, description: str, log: Callable[[str], None], enabled: bool = True) -> None:
        self.total, self.description, self.log = total, description, log
        self.seen, self.next_line, self.losses = 0, total / 10, []
        self.started = time.perf_counter()
        in_notebook = "ipykernel" in sys.modules
        if enabled and in_notebook and not notebook_widgets_installed():
            warnings.warn("no progress bar: it needs ipywidgets, the notebook extra: pip install -e '.[notebook]'",
                          stacklevel=2)  # fmt: skip
            in_notebook = False
        interactive = sys.stderr.isatty() or in_notebook  # a terminal, or a notebook's kernel
        self.bar = tqdm(total=total, desc=description, unit="img", leave=False) if enabled and interactive else None
        self.lines = enabled and not interactive

    def __call__(self, images: int, loss: float) -> None:
        """Count a finished step of ``images`` images with its ``loss``."""
        self.seen += images
        self.losses.append(loss)
        if self.bar is not None:
            self.bar.update(images)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if self.lines and self.next_line <= self.seen < self.total:  # the epoch line reports the end
            elapsed = time.perf_counter() - self.started
            rate = self.seen / max(elapsed, 1e-9)
            self.log(
                f"  {self.description}  {self.seen:>{len(f'{self.total:,}')},}/{self.total:,} images  "
                f"{rate:,.0f} img/s  loss {sum(self.losses) / len(self.losses):.4f}  "
                f"{(self.total - self.seen) / rate:.0f} s left"
            )
            self.losses.clear()
            while self.next_line <= self.seen:
                self.next_line += self.total / 10

    def close(self) -> None:
        """Remove the bar (the epoch's summary line follows)."""
        if self.bar is not None:
            self.bar.close()
