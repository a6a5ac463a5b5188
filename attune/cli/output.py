"""What the ``attune`` command prints: rich tables for people, one JSON document for scripts.

:class:`Output` is made once per run. With ``--json`` every command prints exactly one
JSON document on stdout (nothing else); without it, tables and sentences rendered by
``rich`` (colour only when stdout is a terminal). Messages, warnings and progress go to
stderr; progress bars and spinners only when stderr is a terminal and not with ``--json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from attune.memory.progress import ProgressCallback

#: Exit statuses (the parser's epilog says what each means).
OK, NO, ERROR = 0, 1, 2
#: Stdout was closed before the output was written (``attune ... | head -1``): what a
#: shell reports for a command killed by SIGPIPE (128 + 13), never a negative answer.
CLOSED = 141
#: Interrupted (Ctrl-C): what a shell reports for a command ended by SIGINT (128 + 2).
INTERRUPTED = 130

#: Work on more records than this shows a progress bar (on a terminal).
PROGRESS_THRESHOLD = 300
#: Width of tables written to a file or a pipe (a terminal's own width otherwise).
_PIPE_WIDTH = 200
#: Consoles at least this wide get a column for each field of search / list.
_WIDE = 150
_CONTENT_CHARS = 60


def cell(value: Any) -> Text:
    """A table cell: stored text shown as text (never read as rich markup), with control
    characters (an escape sequence in stored content) replaced by spaces."""
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, Mapping | list):
        value = json.dumps(value, ensure_ascii=False)
    return Text("".join(ch if ch.isprintable() else " " for ch in str(value)))


def shorten(text: Any, limit: int = _CONTENT_CHARS) -> str:
    one_line = " ".join(str(text).split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def when(iso: Any) -> str:
    """``2026-12-02T14:52:36.055+00:00`` as ``2026-12-02 14:52:36`` (the times are UTC)."""
    if not isinstance(iso, str):
        return "-"
    return iso.replace("T", " ")[:19]


class _Console(Console):
    """A rich console whose closed stdout raises :class:`BrokenPipeError` (rich's own
    handling exits with status 1, the CLI's "negative answer"); :func:`closed_stdout`
    turns it into :data:`CLOSED`."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def tolerate_unencodable() -> None:
    """Characters stdout's or stderr's encoding cannot hold (an ASCII or cp1252 terminal, a
    pattern in French) are printed as ``?`` rather than failing the command with a
    traceback. (``--json`` is ASCII whatever the data: its escapes keep every character.)"""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
                reconfigure(errors="replace")


def closed_stdout() -> int:
    """The exit status when stdout's reader went away: stdout is pointed at the null
    device (so the interpreter's last flush does not fail again) and nothing is said."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return CLOSED


class Output:
    """The stdout and stderr of one run of the command."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # File-less consoles follow sys.stdout / sys.stderr as they are at each write
        # (pytest's capture too); colour and terminal features only on a terminal.
        self.out = _Console(highlight=False)
        self.err = _Console(stderr=True, highlight=False)
        if not self.out.is_terminal and "COLUMNS" not in os.environ:
            self.out.width = _PIPE_WIDTH  # a table in a file is not wrapped to 80 columns

    # -- one document or one rendering --------------------------------------------------------

    def document(self, data: Any) -> None:
        """The single JSON document of this command (``--json``)."""
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def line(self, text: str, style: str | None = None) -> None:
        self.out.print(Text(text, style=style or ""), soft_wrap=True)

    def table(self, table: Table) -> None:
        self.out.print(table)

    def error(self, text: str) -> None:
        self.err.print(Text(f"attune: {text}"), soft_wrap=True)

    def warning(self, text: str) -> None:
        """A caution for people, on stderr whatever the mode (stdout stays the result's)."""
        self.err.print(Text(f"attune: {text}", style="yellow"), soft_wrap=True)

    def note(self, text: str) -> None:
        """A hint for people, on stderr in ``--json`` mode (stdout holds only the JSON)."""
        (self.err if self.as_json else self.out).print(Text(text, style="dim"), soft_wrap=True)

    # -- progress -----------------------------------------------------------------------------

    @property
    def _live(self) -> bool:
        return not self.as_json and self.err.is_terminal

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner on stderr while a single-shot operation runs (on a terminal)."""
        if not self._live:
            yield
            return
        with self.err.status(Text(text)):
            yield

    @contextlib.contextmanager
    def progress(self, description: str) -> Iterator[ProgressCallback | None]:
        """A ``progress(done, total)`` callback drawing a bar on stderr once the work is
        past :data:`PROGRESS_THRESHOLD` records; None when nothing would be drawn."""
        if not self._live:
            yield None
            return
        bar = ProgressBar(self.err, description)
        try:
            yield bar
        finally:
            bar.stop()


class ProgressBar:
    """A rich progress bar started on the first report past the threshold."""

    def __init__(self, console: Console, description: str) -> None:
        self._console = console
        self._description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._progress is None:
            if max(done, total or 0) <= PROGRESS_THRESHOLD:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done, total=total)

    @property
    def started(self) -> bool:
        return self._progress is not None

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


# -- the tables ---------------------------------------------------------------------------------


def patterns_table(
    results: Sequence[Mapping[str, Any]], *, scored: bool, width: int = _PIPE_WIDTH
) -> Table:
    """search / list: one row a pattern, content shortened (``show ID`` prints it all).
    Narrower than :data:`_WIDE`, type, classification, namespace, creation time and
    creator go under the content in one "pattern" column, so the id is never cut."""
    wide = width >= _WIDE
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False)
    table.add_column("id", no_wrap=True, style="cyan", min_width=36)
    if scored:
        table.add_column("score", justify="right", no_wrap=True)
    if wide:
        table.add_column("type", overflow="fold")
        table.add_column("classification", no_wrap=True)
        table.add_column("namespace", overflow="fold")
        table.add_column("created (UTC)", no_wrap=True)
        table.add_column("creator", overflow="fold")
        table.add_column("content", overflow="fold")
    else:
        table.add_column("pattern", overflow="fold")
    for result in results:
        row = [cell(result.get("pattern_id"))]
        if scored:
            score = result.get("score")
            row.append(cell(f"{score:.3f}" if isinstance(score, float | int) else score))
        kind, level, space, created, creator, content = (
            cell(result.get("pattern_type")),
            cell(result.get("classification")),
            cell(result.get("namespace")),
            cell(when(result.get("created_at"))),
            cell(result.get("created_by")),
            cell(shorten(result.get("content", ""))),
        )
        if wide:
            row += [kind, level, space, created, creator, content]
        else:  # the content, then "type · classification · namespace", "created by creator"
            details = Text(" · ").join([kind, level, space])
            details.append("\n").append_text(created).append(" by ").append_text(creator)
            details.stylize("dim")
            row.append(Text("\n").join([content, details]))
        table.add_row(*row)
    return table


def show_one(out: Output, found: Mapping[str, Any] | None, title: str, missing: str) -> int:
    """One record as a table (``--json``: the document, null when there is none); the
    ``missing`` message and exit status 1 when there is none."""
    if out.as_json:
        out.document(found)
    elif found is not None:
        out.table(fields_table(found, title=title))
    if found is None:
        out.error(missing)
        return NO
    return OK


def fields_table(fields: Mapping[str, Any], title: str | None = None) -> Table:
    """One thing's fields, a row each (show, health, the counts of a command)."""
    table = Table(
        box=box.ROUNDED,
        show_header=False,
        title=None if title is None else cell(title),
        title_justify="left",
    )
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in fields.items():
        if isinstance(value, bool):
            shown = Text(str(value).lower(), style="green" if value else "red")
            table.add_row(cell(name), shown)
        else:
            table.add_row(cell(name), cell(value))
    return table


def events_table(events: Sequence[Mapping[str, Any]], *, width: int = _PIPE_WIDTH) -> Table:
    """audit query: one row an event, oldest first. Narrower than :data:`_WIDE`, seq goes
    under ts, target under user and outcome under tier."""
    wide = width >= _WIDE
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False)
    headers = (
        ["ts (UTC)", "seq", "event", "user", "tier", "target", "outcome"]
        if wide
        else ["ts (UTC)\nseq", "event", "user\ntarget", "tier\noutcome"]
    )
    for header in headers:
        table.add_column(header, overflow="fold", no_wrap=header not in ("user", "target"))
    for event in events:
        outcome = cell(event.get("outcome"))
        outcome.stylize("green" if outcome.plain in ("success", "allowed") else "yellow")
        ts, seq, kind, user, tier, target = (
            cell(when(event.get("ts"))),
            cell(event.get("seq")),
            cell(event.get("event")),
            cell(event.get("user_id")),
            cell(event.get("tier")),
            cell(event.get("target_id")),
        )
        if wide:
            table.add_row(ts, seq, kind, user, tier, target, outcome)
        else:
            lines = Text("\n").join
            table.add_row(lines([ts, seq]), kind, lines([user, target]), lines([tier, outcome]))
    return table


def claude_files_table(files: Sequence[Any]) -> Table:
    """claude-memory show: one row a file, in precedence order (the last wins)."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("level", no_wrap=True, style="cyan")
    table.add_column("file", overflow="fold")
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("imported by", overflow="fold")
    for number, found in enumerate(files, 1):
        table.add_row(
            cell(number),
            cell(found.level),
            cell(found.path),
            cell(found.size),
            cell(found.imported_by),
        )
    return table


def staged_table(staged: Sequence[Mapping[str, Any]]) -> Table:
    """staged list: one row a staged pattern, its content shortened, then (dimmed) its type
    and namespace, who staged it when, and when it expires (``staged show ID`` prints every
    field)."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False)
    table.add_column("id", no_wrap=True, style="cyan", min_width=36)
    table.add_column("staged pattern", overflow="fold")
    for entry in staged:
        details = Text(" · ").join([cell(entry.get("pattern_type")), cell(entry.get("namespace"))])
        details.append("\n").append_text(cell(when(entry.get("staged_at"))))
        details.append(" by ").append_text(cell(entry.get("staged_by")))
        details.append(", expires ").append_text(cell(when(entry.get("expires_at"))))
        details.stylize("dim")
        content = cell(shorten(entry.get("content", "")))
        table.add_row(cell(entry.get("pattern_id")), Text("\n").join([content, details]))
    return table
