"""A guard that refuses outbound network connections and name resolution (loopback stays allowed).

Enabled by ``DIARIZEN_LAB_BLOCK_NETWORK=1`` (CI and the test suite set it, so subprocesses inherit it).
Resolving a name (``socket.getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``,
``getnameinfo``) sends a DNS query from C code that no ``connect`` patch sees, so the resolvers are guarded too:
numeric addresses, ``localhost`` and this machine's own host name resolve, any other name is refused. Every
refused attempt is appended to ``DIARIZEN_LAB_NETWORK_LOG`` when that variable names a file, so a test can
assert that nothing even tried to connect. Code that calls the C resolver directly is outside its reach: the
strace test of the command line (``tests/test_network_trace.py``) watches the system calls instead.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_create_connection = socket.create_connection
_RESOLVERS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")
_original_resolvers = {name: getattr(socket, name) for name in _RESOLVERS}
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class NetworkBlockedError(ConnectionRefusedError):
    """Raised instead of opening an outbound connection while the guard is on."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: resolving it would already reach out


def _resolves_locally(host, reverse: bool = False) -> bool:
    """Whether resolving ``host`` needs no DNS query: a loopback or own name, or a numeric address (for a
    ``reverse`` lookup, only a loopback address)."""
    if isinstance(host, bytes):
        host = host.decode("idna", errors="replace")
    if host in (None, "") or str(host).lower() in LOCAL_NAMES or host == socket.gethostname():
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])  # an IPv6 address may carry a zone (%eth0)
    except ValueError:
        return False
    return address.is_loopback or not reverse


def _refuse(address, what: str = "connection to") -> None:
    log = os.environ.get("DIARIZEN_LAB_NETWORK_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {what} {address!r}\n")
    raise NetworkBlockedError(f"diarizen_lab network guard: refused {what} {address!r} (offline mode)")


def _guarded_resolver(name: str):
    original = _original_resolvers[name]

    def guarded(host, *args, **kwargs):
        if name in ("getnameinfo", "gethostbyaddr"):  # reverse lookups: of (address, port) or of a name
            address = host[0] if isinstance(host, tuple) and host else host
            if not _resolves_locally(address, reverse=True):
                _refuse(address, "reverse lookup of")
        elif not _resolves_locally(host):
            _refuse(host, "name resolution of")
        return original(host, *args, **kwargs)

    guarded.__name__ = guarded.__qualname__ = name
    guarded.__doc__ = original.__doc__
    return guarded


_guarded_resolvers = {name: _guarded_resolver(name) for name in _RESOLVERS}


def _guarded_connect(self, address):
    if not _is_local(address):
        _refuse(address)
    return _original_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        _refuse(address)
    return _original_connect_ex(self, address)


def _guarded_create_connection(address, *args, **kwargs):
    if not _is_local(address):
        _refuse(address)
    return _original_create_connection(address, *args, **kwargs)


def install() -> None:
    """Refuse every non-loopback connection and name resolution in this process."""
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.create_connection = _guarded_create_connection
    for name, guarded in _guarded_resolvers.items():
        setattr(socket, name, guarded)


def uninstall() -> None:
    socket.socket.connect = _original_connect
    socket.socket.connect_ex = _original_connect_ex
    socket.create_connection = _original_create_connection
    for name, original in _original_resolvers.items():
        setattr(socket, name, original)


def is_installed() -> bool:
    return socket.socket.connect is _guarded_connect


def install_from_env() -> None:
    if os.environ.get("DIARIZEN_LAB_BLOCK_NETWORK") == "1":
        install()
