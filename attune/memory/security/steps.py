"""What the pipeline's steps 1-3 share: their result, running a step, the text scanned.

:class:`Prepared` is what a pattern write stores after steps 1-3 (clean content and
data, the classification decision, PII counts). :func:`_step` runs one step and turns
anything unexpected into :class:`~attune.errors.SecurityPipelineError` (fail closed).
:func:`_as_lines` is the one text the secrets detector scans for a write: every string
of the content and metadata, a string under a key as ``key: value``. The steps
themselves are :mod:`.secrets`, :mod:`.pii` and :mod:`.classifier`; their order is
:class:`~.pipeline.SecurityPipeline`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from attune.errors import AttuneError, SecurityPipelineError
from attune.memory.security.classifier import ClassificationDecision
from attune.memory.types import Classification

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a pattern write stores after steps 1-3."""

    content: str
    data: dict[str, Any]
    decision: ClassificationDecision
    pii_counts: dict[str, int] = field(default_factory=dict)

    @property
    def classification(self) -> Classification:
        return self.decision.classification

    @property
    def metadata(self) -> dict[str, Any]:
        return self.data

    @property
    def audit_details(self) -> dict[str, Any]:
        return {"rule": self.decision.rule, "pii": dict(self.pii_counts)}


def _step(name: str, fn: Callable[[], T]) -> T:
    """Run one pipeline step; anything unexpected refuses the write (fail closed)."""
    try:
        return fn()
    except AttuneError:
        raise
    except Exception as exc:
        raise SecurityPipelineError(
            f"security step '{name}' failed ({type(exc).__name__}); the write was refused"
        ) from None


def _as_lines(value: Any) -> str:
    """Every string of ``value`` (keys included) as one text for the secrets detector.

    A string under a key reads ``key: value``, as it would in a config file, so a
    credential is found by its field name too (``{"api_key": "..."}``), and so does each
    string of a list under a key (``{"api_keys": ["..."]}``); one scan of one text instead
    of one per string.
    """
    lines: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            lines.append(item)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and isinstance(child, str):
                    lines.append(f"{key}: {child}")
                elif isinstance(key, str) and isinstance(child, list | tuple):
                    lines.append(key)  # a list under a key: each of its strings reads so too
                    for element in child:
                        if isinstance(element, str):
                            lines.append(f"{key}: {element}")
                        else:
                            walk(element)
                else:
                    walk(key)
                    walk(child)
        elif isinstance(item, list | tuple):
            for child in item:
                walk(child)

    walk(value)
    return "\n".join(lines)
