"""Claude memory: the CLAUDE.md hierarchy, loaded the way Claude Code loads it.

When ``load_claude_memory`` is on (``ATTUNE_CLAUDE_MEMORY=true``),
:attr:`AsyncUnifiedMemory.claude_memory <attune.memory.AsyncUnifiedMemory.claude_memory>`
is a :class:`ClaudeMemory`: the combined text and the files it came from, each with its
level. The files, in precedence order (a later one takes precedence over an earlier one):

1. ``policy``: the enterprise policy, ``claude_policy_file`` (``ATTUNE_CLAUDE_POLICY_FILE``),
   else ``/etc/claude-code/CLAUDE.md`` on Linux, ``/Library/Application
   Support/ClaudeCode/CLAUDE.md`` on macOS, ``C:\\ProgramData\\ClaudeCode\\CLAUDE.md`` on
   Windows (the platform's file is skipped when absent; a configured one must exist);
2. ``user``: ``~/.claude/CLAUDE.md``, then ``~/.claude/rules/*.md`` (by name);
3. for each directory from the outermost (below ``/``) to the working directory:
   ``CLAUDE.md``, ``.claude/CLAUDE.md``, ``.claude/rules/*.md`` (by name) at level
   ``project``, then ``CLAUDE.local.md`` at level ``local``.

Each file's ``@path`` imports (a word starting with ``@``, not inside an inline code span
or a fenced code block) are loaded right after it, depth first, at level ``import``:
relative to the importing file, ``~`` expanded, at most :data:`MAX_IMPORT_DEPTH` hops from
a file of the hierarchy. An import of a file that does not exist is skipped (``@someone``
in prose); a file reached twice is loaded once.

Containment: the real path (symlinks resolved) of an import, and of every project or
local file, must lie under the project root (the outermost directory where project memory
was found, else the working directory), ``~/.claude``, or a directory of
``claude_import_roots``. Each file holds at most ``claude_max_file_bytes`` (256 KiB), all
of them together ``claude_max_total_bytes`` (1 MiB). Any refusal -- an escape, an import
cycle or one too deep, a file too big, unreadable or not UTF-8 -- is a
:class:`~attune.errors.ClaudeMemoryError` naming the file, never quoting its content.

A file that holds what looks like a credential is loaded, and a warning on the logger
``attune.claude_memory`` names the file and the kinds found (never the value).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from attune.errors import ClaudeMemoryError
from attune.memory.config import MemoryConfig
from attune.memory.security.secrets import SecretsDetector

logger = logging.getLogger("attune.claude_memory")

Level = Literal["policy", "user", "project", "local", "import"]
#: How many imports deep a chain may go from a file of the hierarchy.
MAX_IMPORT_DEPTH = 5

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_IMPORT = re.compile(r"(?:(?<=\s)|^)@([^\s`]+)")


@dataclass(frozen=True, slots=True)
class ClaudeMemoryFile:
    """One loaded file: where it is, its level, its size, and who imported it."""

    path: Path
    level: Level
    size: int
    imported_by: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "level": self.level,
            "bytes": self.size,
            "imported_by": None if self.imported_by is None else str(self.imported_by),
        }


@dataclass(frozen=True, slots=True)
class ClaudeMemory:
    """The loaded hierarchy: ``text`` joins every file's content in precedence order (the
    later takes precedence), each under a ``<!-- level: path -->`` line; ``files`` lists
    them in the same order."""

    text: str
    files: tuple[ClaudeMemoryFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [f.to_dict() for f in self.files],
            "total_bytes": self.total_bytes,
            "text": self.text,
        }


def default_policy_file(platform: str | None = None) -> Path:
    """The enterprise policy file of ``platform`` (default: this one)."""
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return Path("/Library/Application Support/ClaudeCode/CLAUDE.md")
    if platform.startswith("win"):
        return Path("C:\\ProgramData\\ClaudeCode\\CLAUDE.md")
    return Path("/etc/claude-code/CLAUDE.md")


def import_targets(text: str) -> list[str]:
    """The ``@path`` imports of ``text``, in order; none inside code spans or fences."""
    found: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and _closes(opened, fence, line):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        masked = _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        found.extend(m.group(1) for m in _IMPORT.finditer(masked))
    return found


def _closes(opened: re.Match[str], fence: str, line: str) -> bool:
    """Whether the fence ``opened`` on ``line`` closes the block ``fence`` opened."""
    run = opened.group(1)
    return run[0] == fence[0] and len(run) >= len(fence) and not line[opened.end() :].strip()


def _project_files(directory: Path) -> list[tuple[Path, Level]]:
    claude = directory / ".claude"
    files: list[tuple[Path, Level]] = [
        (directory / "CLAUDE.md", "project"),
        (claude / "CLAUDE.md", "project"),
    ]
    files += [(rule, "project") for rule in _rules(claude / "rules")]
    files.append((directory / "CLAUDE.local.md", "local"))
    return files


def _rules(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.glob("*.md") if p.is_file())
    except OSError:
        return []


class _Loader:
    def __init__(self, config: MemoryConfig, home: Path, roots: list[Path]) -> None:
        self.config = config
        self.home = home
        self.roots = roots
        self.detector = SecretsDetector(config.secret_patterns)
        self.files: list[ClaudeMemoryFile] = []
        self.sections: list[str] = []
        self.seen: set[Path] = set()
        self.total = 0

    def contain(self, path: Path, real: Path, why: str) -> None:
        if not any(real.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(str(root) for root in self.roots)
            raise ClaudeMemoryError(
                path,
                f"{why} resolves to {real}, outside the allowed roots ({allowed}); "
                "add its directory to claude_import_roots (ATTUNE_CLAUDE_IMPORT_ROOTS) "
                "to allow it",
            )

    def load(self, path: Path, level: Level, *, contained: bool) -> None:
        """``path`` (a file of the hierarchy, known to exist) and its imports."""
        real = path.resolve()
        if contained:
            self.contain(path, real, "this file")
        self.read(path, real, level, None, ())

    def read(
        self, path: Path, real: Path, level: Level, by: Path | None, chain: tuple[Path, ...]
    ) -> None:
        if real in self.seen:
            return
        self.seen.add(real)
        text, size = self.text_of(path)
        self.files.append(ClaudeMemoryFile(path, level, size, by))
        self.sections.append(f"<!-- {level}: {path} -->\n{text.rstrip()}")
        self.warn_of_secrets(path, text)
        chain = (*chain, real)
        for target in import_targets(text):
            self.follow(path, target, chain)

    def follow(self, importer: Path, target: str, chain: tuple[Path, ...]) -> None:
        raw = Path(target)
        if target == "~" or target[:2] in ("~/", "~" + os.sep):
            raw = self.home / target[2:]
        path = raw if raw.is_absolute() else importer.parent / raw
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL character
            raise ClaudeMemoryError(importer, "an import cannot be resolved") from None
        self.contain(importer, real, f"the import @{target}")
        if real in chain:
            cycle = " -> ".join(str(p) for p in (*chain[chain.index(real) :], real))
            raise ClaudeMemoryError(importer, f"import cycle: {cycle}")
        try:
            found = real.is_file()
        except (OSError, ValueError):  # a name too long, a NUL character
            found = False
        if not found:
            return  # "@someone" in prose, a directory: not a file to import
        if len(chain) > MAX_IMPORT_DEPTH:
            raise ClaudeMemoryError(
                importer,
                f"the import @{target} is more than {MAX_IMPORT_DEPTH} imports deep",
            )
        self.read(path, real, "import", importer, chain)

    def text_of(self, path: Path) -> tuple[str, int]:
        limit = self.config.claude_max_file_bytes
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise ClaudeMemoryError(path, f"cannot be read ({exc.strerror})") from None
        if len(data) > limit:
            raise ClaudeMemoryError(path, f"is larger than claude_max_file_bytes ({limit} bytes)")
        self.total += len(data)
        if self.total > self.config.claude_max_total_bytes:
            raise ClaudeMemoryError(
                path,
                "brings the Claude memory past claude_max_total_bytes "
                f"({self.config.claude_max_total_bytes} bytes)",
            )
        try:
            return data.decode("utf-8"), len(data)
        except UnicodeDecodeError:
            raise ClaudeMemoryError(path, "is not UTF-8 text") from None

    def warn_of_secrets(self, path: Path, text: str) -> None:
        kinds = self.detector.kinds(text)
        if kinds:
            listed = ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items()))
            logger.warning(
                "Claude memory file %s holds what looks like a credential (%s); it is "
                "given to the agent as written: move the secret out of it",
                path,
                listed,
            )


def load(config: MemoryConfig, cwd: Path | None = None, home: Path | None = None) -> ClaudeMemory:
    """Load the hierarchy for ``cwd`` (default: the working directory) and ``home``
    (default: the user's); see the module's docstring for the order and the rules."""
    home = Path.home() if home is None else home
    cwd = (Path.cwd() if cwd is None else cwd).absolute()
    user_dir = home / ".claude"
    directories = [d for d in (cwd, *cwd.parents) if d != d.parent][::-1]
    project = [(d, _project_files(d)) for d in directories]
    root = next((d for d, files in project if any(p.is_file() for p, _ in files)), cwd)
    roots = [root, user_dir, *(r.expanduser() for r in config.claude_import_roots)]
    loader = _Loader(config, home, [r.resolve() for r in roots])

    policy = config.claude_policy_file
    if policy is not None:
        policy = policy.expanduser()
        if not policy.is_file():
            raise ClaudeMemoryError(
                policy, "the configured policy file does not exist or is no file"
            )
        loader.load(policy, "policy", contained=False)
    elif (default := default_policy_file()).is_file():
        loader.load(default, "policy", contained=False)
    for user_file in [user_dir / "CLAUDE.md", *_rules(user_dir / "rules")]:
        if user_file.is_file():
            loader.load(user_file, "user", contained=False)
    for _, files in project:
        for path, level in files:
            if path.is_file():
                loader.load(path, level, contained=True)
    return ClaudeMemory("\n\n".join(loader.sections), tuple(loader.files))
