"""Every code block of the reference documentation, in its order, verbatim.

The blocks below are copied from ``shared/reference/unified-memory-system.md``
(``test_blocks_match_the_document`` checks that they still appear there when
the document is beside the project). They run in one namespace, as a reader
would paste them one after another, on the embedded default and on a real
Redis. The only adaptations, listed in ``ADAPT``, are the Redis URL, the
storage/log paths, and the ``...`` placeholders of the migration block.
After each block, its ``check`` asserts the shapes the document shows.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "shared" / "reference" / "unified-memory-system.md"

Check = Callable[[dict[str, Any], str], None]
BLOCKS: list[tuple[str, str, Check]] = []


def block(name: str, code: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        BLOCKS.append((name, code, check))
        return check

    return register


@block(
    "quick start",
    """
from attune import EmpathyOS

# Create an agent with unified memory (auto-configured)
empathy = EmpathyOS(user_id="analyst@company.com")

# Short-term memory (working data, expires)
empathy.stash("current_task", {"files": ["api.py"], "status": "analyzing"})
task = empathy.retrieve("current_task")

# Long-term memory (persistent patterns)
result = empathy.persist_pattern(
    content="When handling API errors, always include request_id for tracing",
    pattern_type="best_practice"
)
pattern = empathy.recall_pattern(result["pattern_id"])
""",
)
def _check_quick_start(ns: dict[str, Any], out: str) -> None:
    assert ns["task"] == {"files": ["api.py"], "status": "analyzing"}
    assert ns["result"]["pattern_id"].startswith("pat_")
    assert ns["pattern"]["content"] == (
        "When handling API errors, always include request_id for tracing"
    )
    assert ns["pattern"]["pattern_type"] == "best_practice"


@block(
    "direct memory access",
    """
# Access the unified memory interface directly
memory = empathy.memory

# Check health of both tiers
health = memory.health_check()
print(f"Short-term available: {health['short_term']['available']}")
print(f"Long-term available: {health['long_term']['available']}")
print(f"Environment: {health['environment']}")
""",
)
def _check_health(ns: dict[str, Any], out: str) -> None:
    assert "Short-term available: True" in out
    assert "Long-term available: True" in out
    assert "Environment: development" in out


@block(
    "automatic detection",
    """
from attune.memory import UnifiedMemory, MemoryConfig

# Auto-detect from environment variables
memory = UnifiedMemory(user_id="agent@company.com")
# Checks: REDIS_URL, ATTUNE_ENV, ATTUNE_STORAGE_DIR
""",
)
def _check_auto(ns: dict[str, Any], out: str) -> None:
    assert ns["memory"].health_check()["short_term"]["available"] is True


@block(
    "manual configuration",
    """
from attune.memory import UnifiedMemory, MemoryConfig, Environment

# Development (mock Redis, local storage)
dev_config = MemoryConfig(
    environment=Environment.DEVELOPMENT,
    redis_mock=True,
    storage_dir="./dev_storage",
    encryption_enabled=False
)

# Production (real Redis, encrypted storage)
prod_config = MemoryConfig(
    environment=Environment.PRODUCTION,
    redis_url="redis://user:pass@host:6379",
    storage_dir="/var/empathy/patterns",
    encryption_enabled=True
)

memory = UnifiedMemory(user_id="agent@company.com", config=prod_config)
""",
)
def _check_manual(ns: dict[str, Any], out: str) -> None:
    assert ns["dev_config"].short_term_backend == "mock"
    assert ns["prod_config"].short_term_backend == "redis"
    assert ns["memory"].environment.value == "production"


@block(
    "stash and retrieve",
    """
# Store with default TTL (1 hour)
empathy.stash("analysis_results", {
    "files_reviewed": 10,
    "issues_found": 3,
    "timestamp": "2025-12-10T10:00:00"
})

# Store with custom TTL (24 hours)
empathy.memory.stash("weekly_summary", summary_data, ttl_seconds=86400)

# Retrieve
results = empathy.retrieve("analysis_results")
""",
)
def _check_stash(ns: dict[str, Any], out: str) -> None:
    assert ns["results"] == {
        "files_reviewed": 10,
        "issues_found": 3,
        "timestamp": "2025-12-10T10:00:00",
    }
    assert ns["empathy"].retrieve("weekly_summary") == ns["summary_data"]
    assert 86000 < ns["empathy"].memory.ttl("weekly_summary") <= 86400


@block(
    "stage patterns",
    """
# Stage a discovered pattern
staged_id = empathy.memory.stage_pattern(
    pattern_data={
        "content": "Always validate user input at API boundaries",
        "code_example": "def validate(input): ...",
        "metadata": {"discovered_in": "pr_review_42"}
    },
    pattern_type="security",
    ttl_hours=24  # Auto-expires if not promoted
)

# View all staged patterns
staged = empathy.memory.get_staged_patterns()
for p in staged:
    print(f"Pattern: {p['pattern_type']} - Confidence: {p.get('confidence', 'N/A')}")
""",
)
def _check_stage(ns: dict[str, Any], out: str) -> None:
    assert isinstance(ns["staged_id"], str)
    assert "Pattern: security - Confidence: N/A" in out
    mine = [p for p in ns["staged"] if p["pattern_id"] == ns["staged_id"]]
    assert mine and mine[0]["metadata"] == {"discovered_in": "pr_review_42"}


@block(
    "persist patterns",
    """
# Basic pattern storage
result = empathy.persist_pattern(
    content="Use dependency injection for testable code",
    pattern_type="architecture"
)
print(f"Pattern ID: {result['pattern_id']}")
print(f"Classification: {result['classification']}")  # AUTO-DETECTED

# With explicit classification
result = empathy.persist_pattern(
    content="Patient data handling protocol for HIPAA compliance",
    pattern_type="clinical_protocol",
    classification="SENSITIVE",  # Forces encryption
    metadata={"compliance": ["HIPAA"], "author": "compliance_team"}
)
""",
)
def _check_persist(ns: dict[str, Any], out: str) -> None:
    assert re.search(r"Pattern ID: pat_\w+", out)
    assert "Classification: PUBLIC" in out
    assert ns["result"]["classification"] == "SENSITIVE"
    assert ns["result"]["encrypted"] is True
    recalled = ns["empathy"].recall_pattern(ns["result"]["pattern_id"])
    assert recalled["content"] == "Patient data handling protocol for HIPAA compliance"
    assert recalled["metadata"] == {"compliance": ["HIPAA"], "author": "compliance_team"}


@block(
    "recall patterns",
    """
# Retrieve by ID
pattern = empathy.recall_pattern("pat_abc123")
if pattern:
    print(f"Content: {pattern['content']}")
    print(f"Type: {pattern['pattern_type']}")
    print(f"Created: {pattern['created_at']}")
""",
)
def _check_recall(ns: dict[str, Any], out: str) -> None:
    assert ns["pattern"] is None  # no such id was stored
    assert out == ""


@block(
    "classification levels",
    """
from attune.memory import Classification

# Auto-classification (recommended)
result = empathy.persist_pattern(
    content="JWT refresh pattern for auth tokens",
    pattern_type="security",
    auto_classify=True  # Default
)
# Result: {"classification": "INTERNAL"}

# Explicit classification
result = empathy.persist_pattern(
    content="Patient handoff protocol",
    pattern_type="clinical",
    classification=Classification.SENSITIVE
)
# Result: {"classification": "SENSITIVE", "encrypted": True}
""",
)
def _check_classification(ns: dict[str, Any], out: str) -> None:
    assert ns["result"]["classification"] == "SENSITIVE"
    assert ns["result"]["encrypted"] is True
    again = ns["empathy"].persist_pattern(
        content="JWT refresh pattern for auth tokens", pattern_type="security", auto_classify=True
    )
    assert again["classification"] == "INTERNAL"


@block(
    "example workflow",
    """
from attune import EmpathyOS, AccessTier

# 1. Contributor discovers a pattern
contributor = EmpathyOS(
    user_id="code_reviewer",
    access_tier=AccessTier.CONTRIBUTOR
)

staged_id = contributor.memory.stage_pattern(
    pattern_data={
        "content": "Use connection pooling for database access",
        "confidence": 0.92,
        "discovered_in": "performance_review"
    },
    pattern_type="optimization"
)
print(f"Pattern staged: {staged_id}")

# 2. Validator reviews and promotes
validator = EmpathyOS(
    user_id="senior_architect",
    access_tier=AccessTier.VALIDATOR
)

# Review staged patterns
staged = validator.memory.get_staged_patterns()
for p in staged:
    if p.get("confidence", 0) > 0.85:
        # Promote to long-term storage
        result = validator.memory.promote_pattern(
            staged_pattern_id=p["pattern_id"],
            classification="INTERNAL",  # Optional override
        )
        print(f"Promoted: {result['pattern_id']}")
""",
)
def _check_workflow(ns: dict[str, Any], out: str) -> None:
    assert f"Pattern staged: {ns['staged_id']}" in out
    assert out.count("Promoted: pat_") == 1
    assert ns["result"]["classification"] == "INTERNAL"
    left = [p["pattern_id"] for p in ns["validator"].memory.get_staged_patterns()]
    assert ns["staged_id"] not in left


@block(
    "pii scrubbing",
    """
# PII in content is automatically redacted
result = empathy.persist_pattern(
    content="User john.doe@company.com reported issue with SSN 123-45-6789",
    pattern_type="support_pattern"
)
# Stored as: "User [EMAIL] reported issue with SSN [SSN]"
""",
)
def _check_pii(ns: dict[str, Any], out: str) -> None:
    stored = ns["empathy"].recall_pattern(ns["result"]["pattern_id"])
    assert stored["content"] == "User [EMAIL] reported issue with SSN [SSN]"


@block(
    "secrets detection",
    """
# This will trigger a security warning
result = empathy.persist_pattern(
    content="API key: sk-proj-abc123...",
    pattern_type="api_integration"
)
# Result: {"error": "secrets_detected", "blocked": True}
""",
)
def _check_secrets(ns: dict[str, Any], out: str) -> None:
    assert ns["result"]["error"] == "secrets_detected"
    assert ns["result"]["blocked"] is True
    assert "pattern_id" not in ns["result"]
    assert "sk-proj-abc123" not in str(ns["result"])


@block(
    "audit logging",
    """
# Audit events are automatically generated for:
# - Pattern storage/retrieval
# - Classification decisions
# - Access control checks
# - Security violations

# View audit events programmatically
from attune.memory import AuditLogger
logger = AuditLogger(log_file="/var/log/empathy/audit.jsonl")
""",
)
def _check_audit(ns: dict[str, Any], out: str) -> None:
    assert ns["logger"].verify().ok


@block(
    "complete example",
    '''
"""
Multi-agent system where agents discover and share patterns.
"""
import asyncio
from attune import EmpathyOS, AccessTier, get_redis_memory

async def knowledge_building_demo():
    # Shared memory for all agents
    memory = get_redis_memory()

    # Specialist agents discover patterns
    security_agent = EmpathyOS(
        user_id="security_specialist",
        short_term_memory=memory,
        access_tier=AccessTier.CONTRIBUTOR
    )

    performance_agent = EmpathyOS(
        user_id="performance_specialist",
        short_term_memory=memory,
        access_tier=AccessTier.CONTRIBUTOR
    )

    # Lead architect validates and promotes
    architect = EmpathyOS(
        user_id="lead_architect",
        short_term_memory=memory,
        access_tier=AccessTier.VALIDATOR
    )

    # 1. Security agent discovers a pattern
    security_agent.memory.stage_pattern(
        pattern_data={
            "content": "Always sanitize SQL inputs using parameterized queries",
            "code": "cursor.execute('SELECT * FROM users WHERE id = ?', (user_id,))",
            "confidence": 0.95,
            "source": "code_review_auth_module"
        },
        pattern_type="security"
    )
    print("Security pattern staged")

    # 2. Performance agent discovers a pattern
    performance_agent.memory.stage_pattern(
        pattern_data={
            "content": "Use bulk operations for batch database updates",
            "code": "session.bulk_insert_mappings(Model, data_list)",
            "confidence": 0.88,
            "source": "performance_analysis_q4"
        },
        pattern_type="optimization"
    )
    print("Performance pattern staged")

    # 3. Architect reviews all staged patterns
    staged = architect.memory.get_staged_patterns()
    print(f"\\nPatterns awaiting review: {len(staged)}")

    for p in staged:
        print(f"\\n--- {p['pattern_type'].upper()} Pattern ---")
        print(f"Content: {p['content'][:50]}...")
        print(f"Confidence: {p.get('confidence', 'N/A')}")

        # Promote high-confidence patterns
        if p.get('confidence', 0) > 0.85:
            result = architect.memory.promote_pattern(p['pattern_id'])
            print(f"PROMOTED -> Long-term ID: {result['pattern_id']}")
        else:
            print("NEEDS MORE VALIDATION")

    # 4. Check long-term library
    health = architect.memory.health_check()
    print(f"\\n=== Memory Health ===")
    print(f"Short-term: {health['short_term']['available']}")
    print(f"Long-term: {health['long_term']['available']}")
    print(f"Environment: {health['environment']}")

if __name__ == "__main__":
    asyncio.run(knowledge_building_demo())
''',
)
def _check_complete(ns: dict[str, Any], out: str) -> None:
    assert "Security pattern staged" in out and "Performance pattern staged" in out
    # the two new patterns plus the unconfident one staged earlier in this walk-through
    assert "Patterns awaiting review: 3" in out
    assert out.count("PROMOTED -> Long-term ID: pat_") == 2
    assert "NEEDS MORE VALIDATION" in out
    assert "Short-term: True" in out and "Long-term: True" in out


@block(
    "migration: short_term_memory parameter",
    """
# OLD (still works, but deprecated)
from attune import EmpathyOS, get_redis_memory
empathy = EmpathyOS(
    user_id="agent",
    short_term_memory=get_redis_memory()  # Manual setup
)
empathy.short_term_memory.stash(...)  # Direct access

# NEW (recommended)
empathy = EmpathyOS(user_id="agent")
empathy.stash(...)  # Convenience method
empathy.memory.stash(...)  # Or via unified interface
""",
)
def _check_migration(ns: dict[str, Any], out: str) -> None:
    assert ns["empathy"].retrieve("legacy_key") == {"migrated": True}


@block(
    "migration: attune_llm.security",
    """
# OLD (still works via re-exports)
from attune_llm.security import PIIScrubber, SecretsDetector

# NEW (recommended)
from attune.memory import PIIScrubber, SecretsDetector
from attune.memory.security import AuditLogger
""",
)
def _check_legacy_imports(ns: dict[str, Any], out: str) -> None:
    import attune_llm.security as legacy

    assert legacy.PIIScrubber is ns["PIIScrubber"]
    assert legacy.SecretsDetector is ns["SecretsDetector"]


def _adaptations(redis_url: str, tmp: Path) -> list[tuple[str, str]]:
    return [
        ('redis_url="redis://user:pass@host:6379"', f'redis_url="{redis_url}"'),
        ('storage_dir="./dev_storage"', f'storage_dir="{tmp / "dev_storage"}"'),
        ('storage_dir="/var/empathy/patterns"', f'storage_dir="{tmp / "prod_storage"}"'),
        ('log_file="/var/log/empathy/audit.jsonl"', f'log_file="{tmp / "log" / "audit.jsonl"}"'),
        ("stash(...)", 'stash("legacy_key", {"migrated": True})'),
    ]


def _walk(redis_url: str | None, tmp: Path, monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("ATTUNE_STORAGE_DIR", str(tmp / "storage"))
    monkeypatch.setenv("ATTUNE_KEY_PREFIX", prefix)
    if redis_url:
        monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.chdir(tmp)
    adapt = _adaptations(redis_url or "redis://127.0.0.1:6379/15", tmp)
    ns: dict[str, Any] = {"__name__": "__main__", "summary_data": {"week": 49, "patterns": 7}}
    for name, code, check in BLOCKS:
        for old, new in adapt:
            code = code.replace(old, new)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(code, f"<doc block: {name}>", "exec"), ns)
        deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
        if name == "migration: short_term_memory parameter":
            assert any("short_term_memory is deprecated" in str(w.message) for w in deprecations)
        else:
            assert not deprecations, f"{name}: {[str(w.message) for w in deprecations]}"
        check(ns, out.getvalue())


def test_documentation_on_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    _walk(None, tmp_path, monkeypatch, key_prefix)


def test_documentation_on_real_redis(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    _walk(redis_url, tmp_path, monkeypatch, key_prefix)


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_documentation_on_postgresql_and_a_redis_fleet(
    topology: str,
    request: pytest.FixtureRequest,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key_prefix: str,
) -> None:
    """A fleet: only ATTUNE_DATABASE_URL and REDIS_URL changed (plus the root key every
    host of a fleet shares), on PostgreSQL with a Redis Cluster or a Sentinel group; every
    block still runs as written."""
    from attune.memory.security.crypto import generate_master_key

    if topology == "cluster":
        url = request.getfixturevalue("redis_cluster").seed_url(0)
    else:
        url = request.getfixturevalue("redis_sentinel").url(0)
    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    _walk(url, tmp_path, monkeypatch, key_prefix)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.skipif(not DOC.exists(), reason="shared/ is not beside the project")
def test_blocks_match_the_document() -> None:
    doc = _normalise(DOC.read_text())
    for name, code, _ in BLOCKS:
        assert _normalise(code) in doc, f"block {name!r} drifted from the doc"
