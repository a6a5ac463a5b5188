"""Claude memory (``load_claude_memory``): the CLAUDE.md hierarchy in precedence order,
``@imports`` and their refusals (escapes, cycles, depth, size), the secrets warning, the
flag off, the facades and ``attune claude-memory show``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from attune.cli import main
from attune.errors import ClaudeMemoryError, ConfigurationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory import claude_memory as cm
from attune.memory.claude_memory import ClaudeMemory, import_targets, load

#: A credential of a provider format the detector knows (never a real one).
FAKE_KEY = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


class Tree:
    """A fake machine: a home, a policy file, and a project with a nested working dir."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home" / "me"
        self.policy = base / "etc" / "claude-code" / "CLAUDE.md"
        self.repo = base / "src" / "repo"
        self.cwd = self.repo / "pkg" / "sub"
        self.cwd.mkdir(parents=True)
        self.home.mkdir(parents=True)

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def config(self, **values: object) -> MemoryConfig:
        return MemoryConfig(load_claude_memory=True, claude_policy_file=self.policy, **values)  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tree:
    made = Tree(tmp_path)
    monkeypatch.setenv("HOME", str(made.home))
    monkeypatch.setenv("USERPROFILE", str(made.home))
    monkeypatch.chdir(made.cwd)
    return made


def _levels(memory: ClaudeMemory, base: Path) -> list[tuple[str, str]]:
    return [(f.level, f.path.relative_to(base).as_posix()) for f in memory.files]


def test_the_hierarchy_in_precedence_order(tree: Tree) -> None:
    tree.write(tree.policy, "policy rule")
    tree.write(tree.home / ".claude" / "CLAUDE.md", "user rule")
    tree.write(tree.home / ".claude" / "rules" / "b.md", "user rule b")
    tree.write(tree.home / ".claude" / "rules" / "a.md", "user rule a")
    tree.write(tree.home / ".claude" / "rules" / "notes.txt", "not a rule")
    tree.write(tree.repo / "CLAUDE.md", "repo rule")
    tree.write(tree.repo / ".claude" / "CLAUDE.md", "repo dot rule")
    tree.write(tree.repo / ".claude" / "rules" / "style.md", "repo style")
    tree.write(tree.repo / "CLAUDE.local.md", "repo local")
    tree.write(tree.cwd / "CLAUDE.md", "sub rule")
    tree.write(tree.cwd / "CLAUDE.local.md", "sub local")
    tree.write(tree.cwd / "unrelated.md", "never read")

    memory = load(tree.config())
    assert _levels(memory, tree.base) == [
        ("policy", "etc/claude-code/CLAUDE.md"),
        ("user", "home/me/.claude/CLAUDE.md"),
        ("user", "home/me/.claude/rules/a.md"),
        ("user", "home/me/.claude/rules/b.md"),
        ("project", "src/repo/CLAUDE.md"),
        ("project", "src/repo/.claude/CLAUDE.md"),
        ("project", "src/repo/.claude/rules/style.md"),
        ("local", "src/repo/CLAUDE.local.md"),
        ("project", "src/repo/pkg/sub/CLAUDE.md"),
        ("local", "src/repo/pkg/sub/CLAUDE.local.md"),
    ]
    order = [
        "policy rule",
        "user rule",
        "user rule a",
        "user rule b",
        "repo rule",
        "repo dot rule",
        "repo style",
        "repo local",
        "sub rule",
        "sub local",
    ]
    positions = [memory.text.index(f"\n{line}") for line in order]
    assert positions == sorted(positions)
    assert f"<!-- policy: {tree.policy} -->\npolicy rule" in memory.text
    assert "never read" not in memory.text and "not a rule" not in memory.text
    assert memory.total_bytes == sum(len(t) for t in order)
    document = memory.to_dict()
    assert document["files"][0] == {
        "path": str(tree.policy),
        "level": "policy",
        "bytes": len("policy rule"),
        "imported_by": None,
    }


def test_nothing_there_is_an_empty_memory(tree: Tree) -> None:
    memory = load(MemoryConfig(load_claude_memory=True), home=tree.home, cwd=tree.cwd)
    if cm.default_policy_file().is_file():  # pragma: no cover - a machine with a policy
        pytest.skip("this machine has an enterprise policy file")
    assert memory == ClaudeMemory("", ())


def test_a_configured_policy_file_must_exist(tree: Tree) -> None:
    with pytest.raises(ClaudeMemoryError, match="does not exist") as raised:
        load(tree.config())
    assert raised.value.path == str(tree.policy)
    assert isinstance(raised.value, ConfigurationError)


def test_the_platforms_policy_files() -> None:
    assert cm.default_policy_file("linux") == Path("/etc/claude-code/CLAUDE.md")
    assert cm.default_policy_file("darwin") == Path(
        "/Library/Application Support/ClaudeCode/CLAUDE.md"
    )
    assert str(cm.default_policy_file("win32")).endswith("ClaudeCode\\CLAUDE.md")


def test_policy_file_from_the_environment(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.write(tree.policy, "policy from env")
    monkeypatch.setenv("ATTUNE_CLAUDE_MEMORY", "true")
    monkeypatch.setenv("ATTUNE_CLAUDE_POLICY_FILE", str(tree.policy))
    monkeypatch.setenv("ATTUNE_CLAUDE_IMPORT_ROOTS", os.pathsep.join(["/a", "/b"]))
    config = MemoryConfig()
    assert config.claude_import_roots == (Path("/a"), Path("/b"))
    assert [f.level for f in load(config).files] == ["policy"]


# -- imports ------------------------------------------------------------------------------


def test_imports_relative_home_and_nested(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "See @docs/guide.md and @~/.claude/mine.md.\n")
    tree.write(tree.repo / "docs" / "guide.md", "guide; also @../shared/more.md")
    tree.write(tree.repo / "shared" / "more.md", "more text")
    tree.write(tree.home / ".claude" / "mine.md", "mine text")
    tree.write(tree.home / ".claude" / "mine.md.", "with the dot")  # the token as written
    memory = load(tree.config())
    assert [(f.level, f.path.name, f.imported_by) for f in memory.files[1:]] == [
        ("project", "CLAUDE.md", None),
        ("import", "guide.md", tree.repo / "CLAUDE.md"),
        ("import", "more.md", tree.repo / "docs" / "guide.md"),
        ("import", "mine.md.", tree.repo / "CLAUDE.md"),
    ]
    assert memory.text.index("guide; also") < memory.text.index("more text")


def test_a_missing_import_is_prose_and_a_file_reached_twice_loads_once(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "Ask @alice, email bob@example.com. @a.md @b.md")
    tree.write(tree.repo / "a.md", "A @c.md")
    tree.write(tree.repo / "b.md", "B @c.md")
    tree.write(tree.repo / "c.md", "C")
    names = [f.path.name for f in load(tree.config()).files]
    assert names == ["CLAUDE.md", "CLAUDE.md", "a.md", "c.md", "b.md"]


def test_odd_tokens_are_prose_or_refused_never_a_builtin_error(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "@" + "a" * 5000 + " @docs/ @./ @")
    (tree.repo / "docs").mkdir()
    assert [f.path.name for f in load(tree.config()).files] == ["CLAUDE.md", "CLAUDE.md"]
    tree.write(tree.repo / "CLAUDE.md", "@bad\x00name")
    with pytest.raises(ClaudeMemoryError, match="cannot be resolved"):
        load(tree.config())
    (tree.repo / "loop.md").symlink_to(tree.repo / "loop.md")
    tree.write(tree.repo / "CLAUDE.md", "@loop.md")
    with pytest.raises(ClaudeMemoryError):
        load(tree.config())


def test_imports_in_code_are_ignored() -> None:
    text = (
        "real @one.md and `@span.md` and ``code @two-tick.md`` too\n"
        "````md\n@fenced.md\n```\nstill fenced @fenced2.md\n````\n"
        "~~~\n@tilde.md\n~~~\n"
        "after @two.md\n"
        "    ```\nindented four: not a fence @three.md\n"
    )
    assert import_targets(text) == ["one.md", "two.md", "three.md"]


def test_five_hops_and_no_more(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "@h1.md")
    for hop in range(1, 6):
        tree.write(tree.repo / f"h{hop}.md", f"hop {hop} @h{hop + 1}.md")
    # Five hops load; the sixth file does not exist yet: prose.
    assert len(load(tree.config()).files) == 7
    tree.write(tree.repo / "h6.md", "hop 6")
    with pytest.raises(ClaudeMemoryError, match="more than 5 imports deep") as raised:
        load(tree.config())
    assert raised.value.path == str(tree.repo / "h5.md")


def test_an_import_cycle_is_refused(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "@a.md")
    tree.write(tree.repo / "a.md", "@b.md")
    tree.write(tree.repo / "b.md", "@a.md")
    with pytest.raises(ClaudeMemoryError, match="import cycle") as raised:
        load(tree.config())
    assert raised.value.path == str(tree.repo / "b.md")
    assert str(tree.repo / "a.md") in str(raised.value)


def test_a_file_importing_itself_is_a_cycle(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "me: @CLAUDE.md")
    with pytest.raises(ClaudeMemoryError, match="import cycle"):
        load(tree.config())


# -- containment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "../../outside.md", "~/secret.md", "~/.ssh/../secret.md"]
)
def test_an_import_may_not_escape(tree: Tree, target: str) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.base / "src" / "outside.md", "OUTSIDE CONTENT")
    tree.write(tree.home / "secret.md", "HOME SECRET CONTENT")
    importer = tree.write(tree.repo / "CLAUDE.md", f"take @{target}")
    with pytest.raises(ClaudeMemoryError, match="outside the allowed roots") as raised:
        load(tree.config())
    assert raised.value.path == str(importer)
    assert "CONTENT" not in str(raised.value)


def test_a_symlink_may_not_escape(tree: Tree) -> None:
    tree.write(tree.policy, "")
    outside = tree.write(tree.base / "elsewhere" / "private.md", "PRIVATE")
    (tree.repo / "docs").mkdir()
    (tree.repo / "docs" / "link.md").symlink_to(outside)
    tree.write(tree.repo / "CLAUDE.md", "@docs/link.md")
    with pytest.raises(ClaudeMemoryError, match="outside the allowed roots") as raised:
        load(tree.config())
    assert str(outside) in str(raised.value) and "PRIVATE" not in str(raised.value)
    # A project file that is itself a link out is refused the same way.
    (tree.repo / "CLAUDE.md").unlink()
    (tree.cwd / "CLAUDE.md").symlink_to(outside)
    with pytest.raises(ClaudeMemoryError, match="this file resolves"):
        load(tree.config())
    # A configured root lets both in.
    memory = load(tree.config(claude_import_roots=(outside.parent,)))
    assert "PRIVATE" in memory.text


def test_the_project_root_is_the_outermost_directory_with_memory(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "pkg" / "CLAUDE.md", "@../docs/x.md")  # repo/docs: above pkg
    tree.write(tree.repo / "docs" / "x.md", "x")
    with pytest.raises(ClaudeMemoryError, match="outside the allowed roots"):
        load(tree.config())
    tree.write(tree.repo / ".claude" / "CLAUDE.md", "")  # now the root is the repo
    assert [f.path.name for f in load(tree.config()).files][-1] == "x.md"


def test_user_memory_imports_stay_in_dot_claude(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.home / ".claude" / "CLAUDE.md", "@shared/a.md @../.bashrc")
    tree.write(tree.home / ".claude" / "shared" / "a.md", "a")
    tree.write(tree.home / ".bashrc", "export X=1")
    with pytest.raises(ClaudeMemoryError, match=r"@\.\./\.bashrc"):
        load(tree.config())


# -- limits and content ---------------------------------------------------------------------


def test_size_limits(tree: Tree) -> None:
    tree.write(tree.policy, "p" * 100)
    tree.write(tree.repo / "CLAUDE.md", "r" * 300)
    with pytest.raises(ClaudeMemoryError, match="larger than claude_max_file_bytes") as raised:
        load(tree.config(claude_max_file_bytes=200))
    assert raised.value.path == str(tree.repo / "CLAUDE.md")
    with pytest.raises(ClaudeMemoryError, match="past claude_max_total_bytes"):
        load(tree.config(claude_max_total_bytes=350))
    assert (
        load(tree.config(claude_max_file_bytes=300, claude_max_total_bytes=400)).total_bytes == 400
    )
    with pytest.raises(ConfigurationError, match="claude_max_file_bytes"):
        tree.config(claude_max_file_bytes=0)


def test_unreadable_and_undecodable_files(tree: Tree) -> None:
    tree.write(tree.policy, "")
    tree.repo.joinpath("CLAUDE.md").write_bytes(b"\xff\xfe bad")
    with pytest.raises(ClaudeMemoryError, match="not UTF-8"):
        load(tree.config())
    if os.geteuid() == 0:  # pragma: no cover - root reads anything
        return
    locked = tree.write(tree.repo / "CLAUDE.md", "locked")
    locked.chmod(0)
    try:
        with pytest.raises(ClaudeMemoryError, match="cannot be read") as raised:
            load(tree.config())
        assert raised.value.path == str(locked)
    finally:
        locked.chmod(0o600)


def test_a_credential_is_warned_of_never_echoed(
    tree: Tree, caplog: pytest.LogCaptureFixture
) -> None:
    tree.write(tree.policy, "")
    leaky = tree.write(tree.repo / "CLAUDE.md", f"Use token {FAKE_KEY} for the API.")
    with caplog.at_level(logging.WARNING, logger="attune.claude_memory"):
        memory = load(tree.config())
    assert FAKE_KEY in memory.text  # loaded as written: the warning is the point
    records = [r for r in caplog.records if r.name == "attune.claude_memory"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert str(leaky) in message and "github" in message.lower()
    assert FAKE_KEY not in caplog.text and FAKE_KEY[4:20] not in caplog.text


# -- the memory objects and the flag --------------------------------------------------------


async def test_flag_off_reads_nothing(
    tree: Tree, mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.write(tree.repo / "CLAUDE.md", "repo rule")
    monkeypatch.setattr(cm, "load", lambda *a, **k: pytest.fail("read with the flag off"))
    async with AsyncUnifiedMemory("agent", mock_config) as memory:
        assert memory.config.load_claude_memory is False
        assert memory.claude_memory is None


async def test_loaded_lazily_once_on_both_faces(tree: Tree, mock_config: MemoryConfig) -> None:
    tree.write(tree.policy, "policy rule")
    tree.write(tree.repo / "CLAUDE.md", "repo rule")
    config = mock_config.model_copy(
        update={"load_claude_memory": True, "claude_policy_file": tree.policy}
    )
    async with AsyncUnifiedMemory("agent", config) as memory:
        assert memory._claude_memory is None  # nothing read at construction
        loaded = memory.claude_memory
        assert loaded is not None and "repo rule" in loaded.text
        assert memory.claude_memory is loaded
        with pytest.raises(AttributeError):
            loaded.text = "changed"  # type: ignore[misc]
    blocking = UnifiedMemory.wrap(AsyncUnifiedMemory("agent", config))
    try:
        assert blocking.claude_memory is not None
        assert [f.level for f in blocking.claude_memory.files] == ["policy", "project"]
    finally:
        blocking.close()


async def test_a_failure_raises_on_access(tree: Tree, mock_config: MemoryConfig) -> None:
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "@/etc/passwd")
    config = mock_config.model_copy(
        update={"load_claude_memory": True, "claude_policy_file": tree.policy}
    )
    async with AsyncUnifiedMemory("agent", config) as memory:
        with pytest.raises(ClaudeMemoryError, match="outside the allowed roots"):
            _ = memory.claude_memory


# -- the command ------------------------------------------------------------------------------


def test_cli_show(
    tree: Tree, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ATTUNE_CLAUDE_POLICY_FILE", str(tree.policy))
    tree.write(tree.policy, "policy rule")
    tree.write(tree.repo / "CLAUDE.md", "repo rule @notes.md")
    tree.write(tree.repo / "notes.md", "the notes")
    assert main(["claude-memory", "show"]) == 0
    out = capsys.readouterr().out
    for expected in ("policy", "project", "import", "repo rule", "the notes", "3 file(s)"):
        assert expected in out
    assert main(["claude-memory", "show", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [f["level"] for f in document["files"]] == ["policy", "project", "import"]
    assert document["files"][2]["imported_by"] == str(tree.repo / "CLAUDE.md")
    assert "the notes" in document["text"]
    assert document["total_bytes"] == sum(f["bytes"] for f in document["files"])


def test_cli_show_with_nothing_there(
    tree: Tree, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cm, "default_policy_file", lambda: tree.policy)  # absent
    assert main(["claude-memory", "show"]) == 0
    assert "No Claude memory here" in capsys.readouterr().out
    assert main(["claude-memory", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"files": [], "total_bytes": 0, "text": ""}


def test_cli_show_reports_a_refusal(
    tree: Tree, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ATTUNE_CLAUDE_POLICY_FILE", str(tree.policy))
    tree.write(tree.policy, "")
    tree.write(tree.repo / "CLAUDE.md", "@/etc/passwd")
    assert main(["--json", "claude-memory", "show"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "outside the allowed roots" in captured.err
    assert str(tree.repo / "CLAUDE.md") in captured.err.replace("\n", "")
