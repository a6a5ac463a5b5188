"""``attune demo``: the documentation's multi-agent knowledge-building workflow.

It runs on the embedded default (in-process Redis stand-in, SQLite in a temporary
directory removed afterwards, or under ``--storage-dir``), exactly as a newcomer's first
run would, and prints what each agent does.
"""

from __future__ import annotations

import asyncio

from attune import AccessTier, EmpathyOS, get_redis_memory


async def knowledge_building_demo() -> dict[str, object]:
    """Two specialists stage patterns; an architect reviews and promotes them."""
    # Shared memory for all agents
    memory = get_redis_memory()

    # Specialist agents discover patterns
    security_agent = EmpathyOS(
        user_id="security_specialist", short_term_memory=memory, access_tier=AccessTier.CONTRIBUTOR
    )
    performance_agent = EmpathyOS(
        user_id="performance_specialist",
        short_term_memory=memory,
        access_tier=AccessTier.CONTRIBUTOR,
    )
    # Lead architect validates and promotes
    architect = EmpathyOS(
        user_id="lead_architect", short_term_memory=memory, access_tier=AccessTier.VALIDATOR
    )

    # 1. Security agent discovers a pattern
    security_agent.memory.stage_pattern(
        pattern_data={
            "content": "Always sanitize SQL inputs using parameterized queries",
            "code": "cursor.execute('SELECT * FROM users WHERE id = ?', (user_id,))",
            "confidence": 0.95,
            "source": "code_review_auth_module",
        },
        pattern_type="security",
    )
    print("Security pattern staged")

    # 2. Performance agent discovers a pattern
    performance_agent.memory.stage_pattern(
        pattern_data={
            "content": "Use bulk operations for batch database updates",
            "code": "session.bulk_insert_mappings(Model, data_list)",
            "confidence": 0.88,
            "source": "performance_analysis_q4",
        },
        pattern_type="optimization",
    )
    print("Performance pattern staged")

    # 3. Architect reviews all staged patterns
    staged = architect.memory.get_staged_patterns()
    print(f"\nPatterns awaiting review: {len(staged)}")
    promoted = []
    for p in staged:
        print(f"\n--- {p['pattern_type'].upper()} Pattern ---")
        print(f"Content: {p['content'][:50]}...")
        print(f"Confidence: {p.get('confidence', 'N/A')}")
        # Promote high-confidence patterns
        if p.get("confidence", 0) > 0.85:
            result = architect.memory.promote_pattern(p["pattern_id"])
            promoted.append(result["pattern_id"])
            print(f"PROMOTED -> Long-term ID: {result['pattern_id']} ({result['classification']})")
        else:
            print("NEEDS MORE VALIDATION")

    # 4. Anyone can recall what was promoted
    for pattern_id in promoted:
        pattern = security_agent.recall_pattern(pattern_id)
        assert pattern is not None
        print(
            f"\nRecalled {pattern_id}: {pattern['content']!r} by {pattern['metadata']['staged_by']}"
        )

    # 5. The security pipeline on every write
    print("\n=== Security on every write ===")
    leaked = security_agent.persist_pattern(
        # A made-up key, assembled so the source itself holds no key-shaped string.
        content="Call the billing API with key " + "sk-proj-" + "Zq81mNc4Vb7Xw2Lp9Rt5",
        pattern_type="api",
    )
    print(f"A credential in the content: {leaked['error']}, blocked={leaked['blocked']}")
    scrubbed = performance_agent.persist_pattern(
        content="Escalate slow exports to jane.roe@example.org (SSN 123-45-6789 on file)",
        pattern_type="support",
    )
    stored = performance_agent.recall_pattern(scrubbed["pattern_id"])
    assert stored is not None
    print(f"Personal data is scrubbed: {stored['content']!r}")
    clinical = performance_agent.persist_pattern(
        content="Patient handoff checklist for night shifts", pattern_type="clinical"
    )
    print(
        f"Auto-classified {clinical['classification']}, encrypted={clinical['encrypted']} "
        f"(AES-256-GCM), kept {clinical['expires_at'][:10]}"
    )

    # 6. Check both tiers
    health = architect.memory.health_check()
    print("\n=== Memory Health ===")
    print(f"Short-term: {health['short_term']['available']} ({health['short_term']['backend']})")
    long_term = health["long_term"]
    where = long_term.get("path") or long_term.get("url")  # SQLite file, or PostgreSQL
    print(f"Long-term: {long_term['available']} ({long_term['backend']}: {where})")
    print(f"Environment: {health['environment']}")
    # The deployment's own log: the file beside SQLite, the table with PostgreSQL.
    print(f"Audit log: {architect.memory.async_memory.pipeline.audit_logger.verify()}")

    for agent in (security_agent, performance_agent, architect):
        agent.close()
    return {"staged": len(staged), "promoted": promoted, "health": health}


def run() -> dict[str, object]:
    return asyncio.run(knowledge_building_demo())
