"""Search over long-term memory: terms (:mod:`.terms`) and keyed tokens for encrypted
records (:mod:`.blind_index`). The store indexes and queries them; the core's one governed
read path checks access, namespace and retention on every result."""
