"""mkdocs hooks: the reference pages that are generated from the code as the site builds.

* ``<!-- generated: configuration -->`` becomes the table of every :class:`MemoryConfig`
  field: its environment variable (``config.ENV_VARS``), type, default, bounds and the
  ``#:`` comment written above the field in ``attune/memory/config.py``. A field without
  such a comment fails the build, so the table cannot fall behind the code.
* ``<!-- generated: cli -->`` becomes the reference of the ``attune`` command, walked from
  ``attune.cli.parser.build()``: every command and subcommand with its usage, help and
  options.

Besides, the API reference's docstrings are written for Sphinx (``:class:`~a.B```);
mkdocstrings renders them as Markdown, so the role prefix is dropped from the HTML.
"""

from __future__ import annotations

import argparse
import ast
import enum
import inspect
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]
CONFIG_MARKER = "<!-- generated: configuration -->"
CLI_MARKER = "<!-- generated: cli -->"
FACADE_MARKER = re.compile(r"^<!-- generated: facade ([\w.]+) -->$", re.M)
_rendered: set[str] = set()


# -- configuration ----------------------------------------------------------------------------


def _field_comments(source: str) -> dict[str, tuple[str, str]]:
    """Field name -> (its annotation as written, its ``#:`` description) for the fields of
    ``class MemoryConfig``. A ``#:`` block describes the fields that follow it directly (no
    blank line, no other comment between): ``#: Largest file, and all of them together``
    above two fields describes both."""
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "MemoryConfig"
    )
    found: dict[str, tuple[str, str]] = {}
    previous: str | None = None  # the description of the field on the line just above
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            previous = None
            continue
        row = node.lineno - 2  # the line above, 0-based
        comment: list[str] = []
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        if comment:
            description = " ".join(comment)
        elif (
            previous is not None
            and row >= 0
            and lines[row].strip()
            and not (lines[row].strip().startswith("#"))
        ):
            description = previous  # shares the block of the field above it
        else:
            description = ""
        found[node.target.id] = (ast.unparse(node.annotation), description)
        previous = description or None
    return found


def _default(info: Any) -> str:
    factory = info.default_factory
    if factory is not None:
        if factory in (dict, list, tuple, set):
            return f"`{factory()!r}`"
        doc = inspect.getdoc(factory) or ""
        return doc.split("\n\n")[0].replace("\n", " ") or f"`{factory.__name__}()`"
    value = info.default
    if value is None:
        return "none"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`"


_BOUNDS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}


def _bounds(info: Any) -> str:
    parts = []
    for item in info.metadata:
        for attr, sign in _BOUNDS.items():
            if getattr(item, attr, None) is not None:
                parts.append(f"{sign} {getattr(item, attr)}")
        if getattr(item, "min_length", None) is not None:
            parts.append(f"length ≥ {item.min_length}")
        if getattr(item, "max_length", None) is not None:
            parts.append(f"length ≤ {item.max_length}")
        if getattr(item, "pattern", None) is not None:
            parts.append(f"matches `{item.pattern}`")
    return ", ".join(parts)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: ``|`` escaped everywhere, ``<`` and ``*`` outside
    code spans (inside one they are shown as written)."""
    pieces = re.split(r"(`+[^`]*`+)", text)
    return "".join(
        piece.replace("|", "\\|")
        if piece.startswith("`")
        else piece.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")
        for piece in pieces
    )


def _code_cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def configuration_reference() -> str:
    from attune.memory import config

    comments = _field_comments((ROOT / "attune" / "memory" / "config.py").read_text())
    rows = [
        "| field | environment variable | type | default | description |",
        "|---|---|---|---|---|",
    ]
    for name, info in config.MemoryConfig.model_fields.items():
        annotation, description = comments.get(name, ("", ""))
        if not description:
            raise PluginError(
                f"MemoryConfig.{name} has no description: write a '#:' comment above it in "
                "attune/memory/config.py (the configuration reference is generated from it)"
            )
        bounds = _bounds(info)
        if bounds:
            description = f"{description} ({bounds})" if bounds else description
        var = config.ENV_VARS.get(name)
        rows.append(
            f"| `{name}` | {f'`{var}`' if var else 'argument only'} | "
            f"{_code_cell(annotation)} | {_cell(_default(info))} | {_cell(description)} |"
        )
    unknown = set(config.ENV_VARS) - set(config.MemoryConfig.model_fields)
    if unknown:
        raise PluginError(f"ENV_VARS names fields MemoryConfig lacks: {sorted(unknown)}")
    return "\n".join(rows) + "\n"


# -- the blocking facades ---------------------------------------------------------------------


def facade_reference(path: str) -> str:
    """The methods of a blocking facade (``attune.memory.UnifiedMemory``), each with the
    signature and first docstring line of the coroutine it runs."""
    import importlib

    module_name, _, class_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    rows = ["| method | what it does |", "|---|---|"]
    for name, member in vars(cls).items():
        if name.startswith("_") or not callable(member) or isinstance(member, type):
            continue
        signature = str(inspect.signature(member)).replace("(self, ", "(").replace("(self)", "()")
        signature = re.sub(r" -> .*$", "", signature)
        signature = re.sub(r": '([^']*)'", r": \1", signature)  # postponed annotations
        doc = (inspect.getdoc(member) or "").split("\n\n")[0].replace("\n", " ")
        rows.append(f"| {_code_cell(name + signature)} | {_cell(doc)} |")
    if len(rows) == 2:
        raise PluginError(f"{path} has no public methods to list")
    return "\n".join(rows) + "\n"


# -- the command line -------------------------------------------------------------------------


def _help(text: str | None) -> str:
    """An action's help as shown (a hidden one, ``SUPPRESS``, has none)."""
    return "" if text is None or text == argparse.SUPPRESS else text


def _block(text: str) -> str:
    """A parser's description or epilog: prose when it is one paragraph of one line, else
    the text as argparse prints it (a raw layout: columns, lists)."""
    text = text.strip()
    if "\n" in text:
        return f"```text\n{text}\n```\n"
    return _cell(text).replace("\\|", "|") + "\n"


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=88)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _subcommands(
    parser: argparse.ArgumentParser,
) -> list[tuple[str, str | None, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand of ``parser``, in declaration order; the help
    is None for a command ``--help`` does not list (registered without help, or SUPPRESS)."""
    found: list[tuple[str, str | None, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {
                choice.dest: choice.help
                for choice in action._choices_actions
                if choice.help != argparse.SUPPRESS
            }
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias
                    continue
                seen.add(id(sub))
                found.append((name, _help(helps[name]) if name in helps else None, sub))
    return found


def _metavar(action: argparse.Action, default: str) -> str:
    """How the usage line names the action's value (a tuple metavar: its names, spaced)."""
    metavar = action.metavar
    if isinstance(metavar, tuple):
        return " ".join(metavar)
    return metavar or default


def _option_rows(parser: argparse.ArgumentParser, skip: frozenset[tuple[str, ...]]) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if tuple(action.option_strings) in skip:
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + _metavar(action, action.dest.upper())
        else:
            name = _metavar(action, action.dest)
        text = _help(action.help)
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            text += " (one of: " + ", ".join(str(c) for c in action.choices) + ")"
        if action.required and action.option_strings:
            text += " (required)"
        rows.append(f"| {_code_cell(str(name))} | {_cell(text)} |")
    return rows


_shapes: dict[int, tuple[tuple[str, ...], ...]] = {}


def _shape(parser: argparse.ArgumentParser) -> tuple[tuple[str, ...], ...]:
    """What a parser accepts: each argument's option strings (or a positional's name) and
    help, in order; two parsers of one shape are one command."""
    return tuple(
        (*action.option_strings, action.dest, _help(action.help)) for action in parser._actions
    )


def _anchor(path: list[str]) -> str:
    """The anchor mkdocs gives the heading of ``path`` (its toc slugify)."""
    return "-".join(re.sub(r"[^\w-]", "", part.lower()) for part in path)


def _command(
    parser: argparse.ArgumentParser,
    path: list[str],
    help_text: str | None,
    skip: frozenset[tuple[str, ...]],
    out: list[str],
    done: dict[int, list[str]],
) -> None:
    out.append(f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`\n")
    first = done.get(id(parser))
    if first is None and help_text is None:  # a hidden twin of a command described already?
        twins = [
            other
            for key, other in done.items()
            if other[-1] == path[-1] and _shapes[key] == _shape(parser)
        ]
        first = twins[0] if twins else None
    if first is not None:  # one command under two names: described once
        note = "; not listed by `--help`" if help_text is None else ""
        out.append(
            f"The same command as [`{' '.join(first)}`](#{_anchor(first)}): the same "
            f"arguments{note}.\n"
        )
        return
    done[id(parser)] = path
    _shapes[id(parser)] = _shape(parser)
    if help_text is None:
        out.append("Not listed by `--help`.\n")
    elif help_text:
        out.append(_cell(help_text[0].upper() + help_text[1:]) + ".\n")
    if parser.description and len(path) > 1:
        out.append(_block(parser.description))
    out.append(f"```text\n{_usage(parser)}\n```\n")
    rows = _option_rows(parser, skip)
    if rows:
        out.extend(["| argument | meaning |", "|---|---|", *rows, ""])
    if parser.epilog and len(path) > 1:
        out.append(_block(parser.epilog))
    for name, sub_help, sub in _subcommands(parser):
        _command(sub, [*path, name], sub_help, skip, out, done)


def cli_reference() -> str:
    from attune.cli.parser import build

    parser = build()
    top = [
        action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]
    # Options of the top level that every subcommand accepts again: described once, here.
    skip = frozenset(tuple(action.option_strings) for action in top)
    out = [f"```text\n{_usage(parser)}\n```\n"]
    if parser.description:
        out.append(_block(parser.description))
    out.append("## Global options\n")
    out.append(
        "Accepted before the command and after it (`attune --json health` and "
        "`attune health --json` are the same).\n"
    )
    out.extend(["| option | meaning |", "|---|---|", *_option_rows(parser, frozenset()), ""])
    if parser.epilog:
        out.append("## Exit status and conventions\n")
        out.append(f"```text\n{parser.epilog.strip()}\n```\n")
    out.append("## Commands\n")
    done: dict[int, list[str]] = {}
    _shapes.clear()
    for name, help_text, sub in _subcommands(parser):
        _command(sub, ["attune", name], help_text, skip, out, done)
    return "\n".join(out)


# -- the hooks --------------------------------------------------------------------------------


def _on_its_own_line(marker: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(marker)}$", re.M)


_GENERATORS = {
    CONFIG_MARKER: configuration_reference,
    CLI_MARKER: cli_reference,
}


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Each marker that stands on a line of its own is replaced by what it names (a marker
    quoted in the text, as on the development page, is left alone)."""
    for marker, generate in _GENERATORS.items():
        pattern = _on_its_own_line(marker)
        if pattern.search(markdown):
            text = generate()
            markdown = pattern.sub(text.replace("\\", "\\\\"), markdown)
            _rendered.add(marker)
    return FACADE_MARKER.sub(lambda match: facade_reference(match.group(1)), markdown)


_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):(<code>)~?")


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return _ROLE.sub(r"\1", html)


_dirty = [False]  # mkdocs serve --dirty rebuilds only the pages that changed


def on_startup(*, command: str, dirty: bool) -> None:
    _dirty[0] = dirty


def on_pre_build(config: MkDocsConfig) -> None:
    _rendered.clear()


def on_post_build(config: MkDocsConfig) -> None:
    if _dirty[0]:
        return
    missing = {CONFIG_MARKER, CLI_MARKER} - _rendered
    if missing:
        raise PluginError(f"no page holds {sorted(missing)}: the generated references are gone")
