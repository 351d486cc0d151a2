"""What nst's local web servers (the live preview, the studio) share: which Host headers they
answer, so a page on another site cannot reach them through a name it points at 127.0.0.1
(DNS rebinding)."""

from __future__ import annotations

#: The names a server bound to loopback answers to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps a server on this machine."""
    return host.strip().lower().strip("[]") in ("127.0.0.1", "localhost", "::1") or host.startswith(
        "127."
    )


def host_allowed(host: str | None, port: int, bound: str = "127.0.0.1") -> bool:
    """Whether a request's Host header names this server (a loopback name, or the address it
    is bound to) and its port."""
    if not host:
        return False  # HTTP/1.1 requires it; browsers always send it
    name, _, given = host.strip().lower().rpartition(":")
    if not name or given != str(port):
        name, given = host.strip().lower(), ""
    return (name in LOOPBACK_NAMES or name == bound.lower()) and given in ("", str(port))
