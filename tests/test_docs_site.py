"""The documentation site: it builds with ``mkdocs build --strict`` (no broken link, no
unresolved reference, no warning), its generated references cover the code, and the user
guide's examples run, in order, as a newcomer would paste them."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from attune.cli.parser import build
from attune.memory.config import ENV_VARS, MemoryConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _mkdocs() -> str:
    exe = Path(sys.executable).with_name("mkdocs")
    if exe.exists() and importlib.util.find_spec("mkdocstrings") is not None:
        return str(exe)
    if os.environ.get("CI") == "true":
        pytest.fail("mkdocs is not installed; pip install -e '.[dev]' (CI must build the docs)")
    pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [_mkdocs(), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return out


def _text(html_file: Path) -> str:
    return re.sub(r"<[^>]+>", " ", html_file.read_text())


def test_site_builds_strict_with_every_page(site: Path) -> None:
    for page in DOCS.glob("*.md"):
        assert (site / page.with_suffix(".html").name).exists(), page.name


def test_configuration_reference_lists_every_field_and_variable(site: Path) -> None:
    text = _text(site / "configuration.html")
    for field in MemoryConfig.model_fields:
        assert field in text, field
    for var in ENV_VARS.values():
        assert var in text, var


def _commands(parser: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                found.append((*path, name))
                found.extend(_commands(sub, (*path, name)))
    return found


def test_cli_reference_lists_every_command_and_option(site: Path) -> None:
    text = _text(site / "cli.html")
    commands = _commands(build())
    assert len(commands) > 10
    for command in commands:
        assert "attune " + " ".join(command) in text, command
    parser = build()
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in text, option
            if action.__class__.__name__ == "_SubParsersAction":
                stack.extend(action.choices.values())


def test_api_reference_documents_the_public_classes(site: Path) -> None:
    html = (site / "reference.html").read_text()
    for anchor in (
        "attune.memory.AsyncUnifiedMemory.stage_pattern",
        "attune.memory.AsyncUnifiedMemory.search_patterns",
        "attune.memory.UnifiedMemory",
        "attune.AsyncEmpathyOS",
        "attune.EmpathyOS",
        "attune.memory.MemoryConfig",
        "attune.errors.AttuneError",
        "attune.errors.ShortTermUnavailableError",
    ):
        assert f'id="{anchor}"' in html, anchor
    assert ":class:" not in _text(site / "reference.html")  # Sphinx roles are rendered


# -- the user guide's examples ----------------------------------------------------------------

#: Lines the guide's examples print, in this order (other lines may come between them).
EXPECTED_LINES = [
    "{'files': ['api.py'], 'status': 'analyzing'}",
    "Include the request_id in every API error, for tracing",
    "True True",
    "development",
    "development",
    "True",
    "{'reviews': 14, 'open': 2}",
    "None",
    "INTERNAL",
    "SENSITIVE True",
    "2",
    "1 0",
    "User [EMAIL] reported an issue with SSN [SSN]",
    "secrets_detected True",
    "Call [PHONE]",
    "True",
    "True",
    "{'ticket': 42}",
    "Retry with jittered backoff",
    "0",
    "True",
    "True",
    "None",
]


def test_user_guide_examples_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    for var in ("REDIS_URL", "ATTUNE_DATABASE_URL", "ATTUNE_ENV", "ATTUNE_MASTER_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ATTUNE_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("ATTUNE_KEY_PREFIX", key_prefix)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "guide.md").read_text(), re.S)
    assert len(blocks) > 15
    out = io.StringIO()
    ns: dict[str, Any] = {"__name__": "__guide__"}
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for number, code in enumerate(blocks, 1):
            exec(compile(code, f"<docs/guide.md block {number}>", "exec"), ns)
    printed = out.getvalue()
    lines = iter(printed.splitlines())
    for expected in EXPECTED_LINES:  # each found after the one before
        assert any(line == expected for line in lines), (expected, printed)
    assert "redis://user:***@redis.internal:6379/0" in printed  # the repr hides the password
    assert "user:pass@" not in printed
    assert re.search(r"^promoted as pat_[0-9a-f]{32}$", printed, re.M)
    assert "needs access tier CONTRIBUTOR" in printed
    assert "hunter2" not in printed and "Xq7Lm2Vt9Rk4" not in printed
    assert (tmp_path / "backup.jsonl").exists()
    assert (tmp_path / "dev_storage").is_dir()
    shutil.rmtree(tmp_path / "storage", ignore_errors=True)


# -- the first script: README and the site's home page ----------------------------------------


def _first_python_block(path: Path) -> str:
    found = re.search(r"```python\n(.*?)```", path.read_text(), re.S)
    assert found, f"{path.name} has a python example"
    return found.group(1)


def test_readme_example_is_the_home_pages_and_runs(tmp_path: Path, key_prefix: str) -> None:
    script = _first_python_block(ROOT / "README.md")
    assert script == _first_python_block(DOCS / "index.md")
    assert len(script.splitlines()) <= 25
    (tmp_path / "first.py").write_text(script)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "ATTUNE_DATABASE_URL", "ATTUNE_ENV", "ATTUNE_MASTER_KEY")
    }
    env.update(ATTUNE_STORAGE_DIR=str(tmp_path / "storage"), ATTUNE_KEY_PREFIX=key_prefix)
    run = subprocess.run(
        [sys.executable, "first.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == "PUBLIC Return 429 with Retry-After when rate limited\n"


def test_readme_links_to_existing_docs_pages() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]*)", readme)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).exists(), link


def test_home_page_gives_the_readmes_two_commands() -> None:
    def first_bash_block(path: Path) -> str:
        found = re.search(r"```bash\n(.*?)```", path.read_text(), re.S)
        assert found, path.name
        return found.group(1)

    assert first_bash_block(DOCS / "index.md") == first_bash_block(ROOT / "README.md")
