"""Pieces of a service URL that the Sentinel and Cluster URL parsers read alike: an IPv6
host, a boolean option. Pure text; nothing connects, nothing is echoed but the option's
name."""

from __future__ import annotations

import ipaddress


def is_ipv6(text: str) -> bool:
    """Whether ``text`` is an IPv6 address (as written between a URL's brackets)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def boolean_option(name: str, value: str, url: str) -> bool:
    """A ``true`` / ``false`` option's value (also 1/0, yes/no, on/off), or ValueError
    naming the option of ``url`` (the kind of URL, as a message names it)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"the option {name} of the {url} is true or false")
