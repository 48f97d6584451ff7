"""Long work as the terminal shows it: one console for the stages' lines and their progress bars.

A stage (`pipeline.stage`) shows a spinner while it runs and one `✓` line when it is done; work
inside it that counts its steps (a search's trials, a training run's epochs, a replay's
requests) draws a bar under the spinner through `steps`. Bars are drawn only on a terminal:
in a log, a test's pipe or a Ray Job's output they print nothing, and the `✓` lines stay.
Everything here runs in the driver: Ray's workers never draw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Stderr: stdout keeps the results (tables, summaries), which a script may read or redirect.
console = Console(stderr=True)


@contextmanager
def steps(what: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A bar for `total` steps of `what`; yields `done(n)`, which moves the bar to n steps done.

    Inside a running stage the bar is drawn under the stage's spinner (one live display), and
    it disappears when the work ends: the stage's `✓` line is what stays."""
    if not console.is_terminal:  # a log or a pipe: rich would still end the bar with a blank line
        yield lambda n: None
        return
    with Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.update(task, completed=n)


def files_seen(
    names: Callable[[], Iterable[str]], prefix: str, done: Callable[[int], None]
) -> Callable[[], None]:
    """A poll that moves `done` to the number of names starting with `prefix` that `names` has
    listed so far, for work that writes one file or folder per step (a training run's
    checkpoints: it keeps the last two, so each lives for two epochs, long enough for a poll
    every half second to see it)."""
    seen: set[str] = set()

    def poll() -> None:
        try:
            seen.update(name for name in names() if name.startswith(prefix))
        except OSError:  # a listing the store failed (on an object store): the next poll tries again
            return
        done(len(seen))

    return poll
