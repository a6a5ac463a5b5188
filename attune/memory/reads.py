"""The one governed read path of long-term memory: search, list and count.

Every read method of :class:`~attune.memory.unified.AsyncUnifiedMemory` that returns
long-term records goes through :meth:`LongTermReads._scope` (the access check, the
namespace scope: an agent sees its own namespace, a STEWARD may name another or ``"*"``)
and asks the store with the retention cut-off (:attr:`PatternQuery.now_ms`: expired
records are never returned), then opens each record through the security pipeline and
audits the read (result ids and counts; a query's text never, only a keyed hash of it).
``tests/test_governed_reads.py`` enumerates the public read methods and checks each one.

Pages: a result is a :class:`PatternPage`, a list of dicts shaped like
``recall_pattern``'s (plus ``score`` for a search), with ``next_cursor``: pass it back as
``cursor=`` for the next page (None on the last page). A cursor holds the last result's
sort key and a fingerprint of the query; it is refused (:class:`ValidationError`) for
another query.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from attune.errors import (
    AccessDeniedError,
    ConfigurationError,
    CorruptRecordError,
)
from attune.memory import clock, validation
from attune.memory.clock import iso_or_none
from attune.memory.core_parts import CoreParts
from attune.memory.long_term.protocol import IndexOp, MetaOp, PatternRecord
from attune.memory.long_term.queries import Found, PatternQuery
from attune.memory.read_args import (
    MAX_LIMIT,
    Filters,
    check_creator,
    check_metadata,
    make_cursor,
    read_cursor,
    time_ms,
)
from attune.memory.search import blind_index, entries
from attune.memory.search.blind_index import BlindIndex
from attune.memory.search.terms import Query, parse_query
from attune.memory.security.audit import Durability
from attune.memory.timestamps import iso_ms
from attune.memory.types import AccessTier, Classification

if TYPE_CHECKING:
    pass

#: ``namespace="*"``: every namespace (STEWARD only).
ALL_NAMESPACES = "*"
_SEARCH_KEY_META = "search_key_id"
_BACKFILL_PAGE = 200


class PatternPage(list[dict[str, Any]]):
    """One page of results (a plain list of result dicts), with the cursor of the next
    page (``next_cursor``; None when this is the last)."""

    next_cursor: str | None = None


class LongTermReads(CoreParts):
    """The core's long-term reads (a mixin of ``AsyncUnifiedMemory``)."""

    # What the core provides (see attune.memory.unified).
    _search: tuple[BlindIndex | None] | None = None
    _indexed = False

    # -- public reads ------------------------------------------------------------------------

    async def search_patterns(
        self,
        query: str | None = None,
        pattern_type: str | None = None,
        classification: Classification | str | None = None,
        limit: int = 10,
        *,
        created_by: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        cursor: str | None = None,
        namespace: str | None = None,
    ) -> PatternPage:
        """Long-term patterns matching ``query`` (ranked keyword search: more of its words
        rank higher; ``"quoted phrases"`` match as phrases; case and accents do not
        matter), best first, each with a relevance ``score``; encrypted records are found
        too. Without ``query``, newest first. Filters: ``pattern_type``,
        ``classification``, ``created_by``, ``since`` / ``until`` (creation time),
        ``metadata`` (equality on top-level keys). ``limit`` results per page; pass the
        page's ``next_cursor`` as ``cursor`` for the next. Only this agent's namespace, unless a
        STEWARD names another (or ``"*"``)."""
        await self._require("search_patterns")
        parsed = None if query is None else parse_query(query)
        wanted = Filters(pattern_type, classification, created_by, since, until, metadata)
        return await self._page("pattern.search", parsed, wanted, limit, cursor, namespace)

    async def list_patterns(
        self,
        pattern_type: str | None = None,
        classification: Classification | str | None = None,
        limit: int = 50,
        *,
        created_by: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        cursor: str | None = None,
        namespace: str | None = None,
    ) -> PatternPage:
        """Long-term patterns, newest first, with the filters of :meth:`search_patterns`;
        the cursor stays correct while records are inserted (a page never repeats or
        skips a record that existed when the first page was read)."""
        await self._require("list_patterns")
        wanted = Filters(pattern_type, classification, created_by, since, until, metadata)
        return await self._page("pattern.list", None, wanted, limit, cursor, namespace)

    async def count_patterns(
        self,
        pattern_type: str | None = None,
        classification: Classification | str | None = None,
        *,
        created_by: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        namespace: str | None = None,
    ) -> int:
        """How many live long-term patterns the filters of :meth:`list_patterns` match."""
        await self._require("count_patterns")
        wanted = Filters(pattern_type, classification, created_by, since, until, metadata)
        store_query, _fingerprint = await self._query(None, wanted, 1, namespace)
        counted = await self.long_term.count(store_query)
        event = self._event("pattern.count", details={"count": counted})
        await self.pipeline.audit(event, Durability.QUEUED)
        return counted

    # -- the governed path -------------------------------------------------------------------

    async def _page(
        self,
        event_name: str,
        parsed_query: Query | None,
        wanted: Filters,
        limit: Any,
        cursor: Any,
        namespace: Any,
    ) -> PatternPage:
        store_query, fingerprint = await self._query(parsed_query, wanted, limit, namespace)
        if cursor is not None:
            after = read_cursor(cursor, fingerprint)
            store_query = replace(store_query, after=after)
        # One more than asked: whether a next page exists, without a count.
        found = await self.long_term.find(replace(store_query, limit=store_query.limit + 1))
        more = len(found) > store_query.limit
        found = found[: store_query.limit]
        page = PatternPage()
        for item in found:
            try:
                page.append(
                    await self.pipeline.opened(
                        self.long_term, functools.partial(self._open, item, parsed_query)
                    )
                )
            except CorruptRecordError:  # reported, skipped: one damaged record breaks no page
                pid = item.record.pattern_id
                corrupt = self._event("pattern.retrieve", target_id=pid, outcome="corrupt")
                await self.pipeline.audit(corrupt, Durability.QUEUED)
        if more and found:
            last = found[-1]
            key = last.score if last.score is not None else float(last.record.created_at_ms)
            page.next_cursor = make_cursor(key, last.record.pattern_id, fingerprint)
        details: dict[str, Any] = {
            "results": len(page),
            "ids": [item["pattern_id"] for item in page],
        }
        if parsed_query is not None:
            details["query"] = self._query_digest(parsed_query)
        await self.pipeline.audit(self._event(event_name, details=details), Durability.QUEUED)
        return page

    async def _query(
        self, parsed_query: Query | None, wanted: Filters, limit: Any, namespace: Any
    ) -> tuple[PatternQuery, str]:
        """Validate the arguments and build the store's query (scope and retention
        included), and the fingerprint a cursor of it carries."""
        limit = validation.check_count(limit, "limit", MAX_LIMIT)
        kind = (
            None
            if wanted.pattern_type is None
            else validation.check_pattern_type(wanted.pattern_type)
        )
        label = (
            None
            if wanted.classification is None
            else Classification.parse(wanted.classification).value
        )
        creator = None if wanted.created_by is None else check_creator(wanted.created_by)
        since_ms = None if wanted.since is None else time_ms(wanted.since, "since")
        until_ms = None if wanted.until is None else time_ms(wanted.until, "until")
        filters = check_metadata(wanted.metadata)
        scope = await self._scope(namespace)
        index = await self._search_index() if (parsed_query is not None or filters) else None
        if parsed_query is not None or filters:
            await self._backfill(index)
        store_query = PatternQuery(
            now_ms=clock.now_ms(),
            namespace=scope,
            match=None
            if parsed_query is None
            else entries.narrowed(entries.match(parsed_query, index), label),
            pattern_type=kind,
            classification=label,
            created_by=creator,
            since_ms=since_ms,
            until_ms=until_ms,
            facets=entries.facets(filters, index),
            limit=limit,
        )
        fingerprint = hashlib.sha256(
            json.dumps(
                [
                    None if parsed_query is None else parsed_query.phrases,
                    kind,
                    label,
                    creator,
                    since_ms,
                    until_ms,
                    store_query.facets,
                    scope,
                    # A search cursor's score is the engine's own (BM25, ts_rank): another
                    # backend's would page on from an unrelated point. A list cursor's key
                    # (creation time, id) means the same on every backend.
                    None if parsed_query is None else self.long_term.backend,
                ]
            ).encode()
        ).hexdigest()[:16]
        return store_query, fingerprint

    async def _scope(self, namespace: Any) -> str | None:
        """The namespace a read sees: this agent's, or (STEWARD) the one named; None is
        every namespace (``"*"``). Another agent naming a namespace not its own is denied
        (audited), even an existing one."""
        if namespace is None or namespace == self.namespace:
            return self.namespace
        if namespace != ALL_NAMESPACES:
            validation.check_namespace(namespace)
        if self.access_tier < AccessTier.STEWARD:
            await self._require("read_other_namespace")
            raise AccessDeniedError("read_other_namespace", self.access_tier.name, "STEWARD")
        return None if namespace == ALL_NAMESPACES else str(namespace)

    def _open(self, found: Found, parsed_query: Any) -> dict[str, Any]:
        """A result as recall_pattern shapes it (decrypted), with its score."""
        content, metadata = self.pipeline.unseal(found.record)
        result = pattern_result(found.record, content, metadata)
        if parsed_query is not None:
            result["score"] = found.score
        return result

    # -- the search key and the index of older records --------------------------------------

    async def _search_index(self) -> BlindIndex | None:
        """The blind index of this store's search key, or None without a master key (then
        only plaintext records can match). The key's master key id is kept in the store,
        so key rotation leaves search working (old master keys stay in the ring)."""
        if self._search is None:
            ring = self.pipeline.cipher.ring
            try:
                active = ring.active_key_id
            except ConfigurationError:
                return None  # no master key: nothing is encrypted, nothing to tokenise
            kid = await self.long_term.write(MetaOp(_SEARCH_KEY_META, active))
            # Any key of the ring, the same on every host; one another host made is learnt.
            key = await self.pipeline.opened(self.long_term, lambda: ring.search_key(kid))
            self._search = (blind_index.shared(key),)
        return self._search[0]

    async def _backfill(self, index: BlindIndex | None, *, again: bool = False) -> None:
        """Index records stored before search existed (once per memory object, unless
        ``again``: then also records whose rows another process has not written yet)."""
        if self._indexed and not again:
            return
        after = ""
        while page := await self.long_term.unindexed(after, _BACKFILL_PAGE):
            built = []
            for record in page:
                try:
                    content, metadata = await self.pipeline.opened(
                        self.long_term, functools.partial(self.pipeline.unseal, record)
                    )
                except (CorruptRecordError, ConfigurationError):
                    continue  # unreadable: left unindexed (recall reports it)
                if record.encrypted and index is None:
                    continue
                built.append((record.pattern_id, self._entry(record, content, metadata, index)))
            if built:
                await self.long_term.write(IndexOp(tuple(built)))
            after = page[-1].pattern_id
        self._indexed = True

    def _entry(
        self, record: Any, content: str, metadata: Mapping[str, Any], index: BlindIndex | None
    ) -> Any:
        return entries.entry(
            content,
            metadata,
            encrypted=record.encrypted,
            index=index,
            tokens=record.classification != "SENSITIVE"
            or self.pipeline.config.search_index_sensitive,
            sensitive=record.classification == "SENSITIVE",
        )

    def _query_digest(self, parsed_query: Any) -> str:
        """A keyed digest of the query for the audit log (never its text)."""
        index = self._search[0] if self._search is not None else None
        words = " ".join(" ".join(phrase) for phrase in parsed_query.phrases)
        token = index.token(words) if index is not None else "unkeyed"
        return "q_" + token


def pattern_result(record: PatternRecord, content: str, metadata: Any) -> dict[str, Any]:
    """A long-term record as every read returns it (``recall_pattern``'s shape)."""
    return {
        "pattern_id": record.pattern_id,
        "content": content,
        "pattern_type": record.pattern_type,
        "classification": record.classification,
        "created_at": iso_ms(record.created_at_ms),
        "created_by": record.created_by,
        "expires_at": iso_or_none(record.expires_at_ms),
        "encrypted": record.encrypted,
        "metadata": metadata,
        "namespace": record.namespace,
    }
