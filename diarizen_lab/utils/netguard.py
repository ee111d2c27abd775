"""A guard that refuses outbound network connections (loopback stays allowed).

Enabled by ``DIARIZEN_LAB_BLOCK_NETWORK=1`` (CI and the test suite set it, so subprocesses inherit it).
Every refused attempt is appended to ``DIARIZEN_LAB_NETWORK_LOG`` when that variable names a file, so a
test can assert that nothing even tried to connect.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_create_connection = socket.create_connection


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


def _refuse(address) -> None:
    log = os.environ.get("DIARIZEN_LAB_NETWORK_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {address!r}\n")
    raise NetworkBlockedError(f"diarizen_lab network guard: refused connection to {address!r} (offline mode)")


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
    """Refuse every non-loopback connection in this process."""
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.create_connection = _guarded_create_connection


def uninstall() -> None:
    socket.socket.connect = _original_connect
    socket.socket.connect_ex = _original_connect_ex
    socket.create_connection = _original_create_connection


def is_installed() -> bool:
    return socket.socket.connect is _guarded_connect


def install_from_env() -> None:
    if os.environ.get("DIARIZEN_LAB_BLOCK_NETWORK") == "1":
        install()
