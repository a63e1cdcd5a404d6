"""The tests' network guard: every Python process the tests start refuses to resolve or reach anything but loopback.

tests/../conftest.py puts this folder first on PYTHONPATH, so Python imports this file at start-up in every child
process (notebook kernels, the JupyterLab server, CLI subprocesses) and installs the guard; the pytest process
installs it by calling `install()`. Refused before any packet is sent: connect / connect_ex / sendto to a
non-loopback address, and name lookups (getaddrinfo, gethostbyname) of anything but localhost, so a black-hole resolver
cannot stall a test. Another sitecustomize further along the path (a distribution's) still runs after this one.
"""

import errno
import importlib.machinery
import importlib.util
import ipaddress
import os
import socket
import sys

REFUSED = "tests must not use the network"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_local(host) -> bool:
    """True for loopback and the unspecified address (0.0.0.0, ::: binding a server), by name or number"""
    if host is None or host in ("", b""):
        return True  # getaddrinfo(None, port): the wildcard or loopback address, no lookup
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").split("%")[0].lower()
    if host in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: looking it up is network traffic
    return address.is_loopback or address.is_unspecified


def _refuse(what: str, host) -> OSError:
    return OSError(errno.ENETUNREACH, f"{REFUSED} ({what} {host!r} refused by tests/offline/sitecustomize.py)")


def install() -> None:
    """patch the socket module of this process (idempotent)"""
    if getattr(socket, "_latentlab_guard", False):
        return
    real_connect, real_connect_ex, real_sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    real_getaddrinfo, real_gethostbyname = socket.getaddrinfo, socket.gethostbyname
    real_gethostbyname_ex = socket.gethostbyname_ex

    def _host(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            return address[0]
        return None  # unix sockets and the like stay on this machine

    def connect(self, address):
        host = _host(self, address)
        if host is not None and not is_local(host):
            raise _refuse("connection to", host)
        return real_connect(self, address)

    def connect_ex(self, address):
        host = _host(self, address)
        if host is not None and not is_local(host):
            return errno.ENETUNREACH
        return real_connect_ex(self, address)

    def sendto(self, data, *args):
        host = _host(self, args[-1])
        if host is not None and not is_local(host):
            raise _refuse("datagram to", host)
        return real_sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):
        if not is_local(host):
            raise socket.gaierror(socket.EAI_NONAME, f"{REFUSED} (name lookup of {host!r} refused)")
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host):
        if not is_local(host):
            raise socket.gaierror(socket.EAI_NONAME, f"{REFUSED} (name lookup of {host!r} refused)")
        return real_gethostbyname(host)

    def gethostbyname_ex(host):
        if not is_local(host):
            raise socket.gaierror(socket.EAI_NONAME, f"{REFUSED} (name lookup of {host!r} refused)")
        return real_gethostbyname_ex(host)

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
    socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex = getaddrinfo, gethostbyname, gethostbyname_ex
    socket._latentlab_guard = True


def _run_the_next_sitecustomize() -> None:
    """this file shadows any other sitecustomize (e.g. Debian's); import that one too"""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if __name__ == "sitecustomize":
    install()
    _run_the_next_sitecustomize()
