"""Which Ray cluster a sweep runs on, found the way Ray itself finds one, and checked before
Ray is asked to join it.

Ray's order: an address given on the command line, else `$RAY_ADDRESS`, else the cluster
that `ray start` began on this node (its address is in `ray_current_cluster` under Ray's
temp folder), else a new Ray instance on this machine alone. `ray exec cluster.yaml 'sweep
run ...'` sets no `RAY_ADDRESS`, so the third is what makes the headline command join the
cluster it runs on.

Ray's own join retries for minutes, printing its C++ log lines, when nothing (or something
else) answers at an address; so before `ray.init` the address is checked here, in a few
seconds: the port must accept a connection and answer as an HTTP/2 (gRPC) server does, as
Ray's GCS does. This module does not import Ray.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sweeps.errors import SweepError

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Cluster:
    address: str | None  # None: a new Ray instance on this machine
    source: str  # where the address came from, for messages

    @property
    def local(self) -> bool:
        return self.address is None


def ray_address_file() -> Path:
    """Where `ray start` writes the address of the cluster it began on this node (Ray's
    `get_ray_address_file`: $RAY_TMPDIR, else $TMPDIR on Linux, else /tmp; then ray/)."""
    if os.environ.get("RAY_TMPDIR"):
        root = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and os.environ.get("TMPDIR"):
        root = os.environ["TMPDIR"]
    else:
        root = "/tmp"
    return Path(root, "ray", "ray_current_cluster")


def find_cluster(address: str | None = None, local: bool = False) -> Cluster:
    """The cluster to run on: --local, else `address`, else $RAY_ADDRESS, else the cluster
    started on this node, else a new local instance. `auto` insists on a running cluster."""
    if local or address == "local":
        return Cluster(None, "--local")
    if address and address != "auto":
        return Cluster(address, "--address")
    if os.environ.get("RAY_ADDRESS") and os.environ["RAY_ADDRESS"] not in ("auto", "local"):
        return Cluster(os.environ["RAY_ADDRESS"], "$RAY_ADDRESS")
    if os.environ.get("RAY_ADDRESS") == "local":
        return Cluster(None, "$RAY_ADDRESS=local")
    file = ray_address_file()
    started = file.read_text().strip() if file.is_file() else ""
    if started:
        return Cluster(started, f"the cluster started on this node, {file}")
    if address == "auto" or os.environ.get("RAY_ADDRESS") == "auto":
        raise SweepError(f"no Ray cluster was started on this node (no {file}); start one with `ray start --head`, "
                         f"give its address with --address HOST:PORT, or run with --local")
    return Cluster(None, "no cluster found")


def host_and_port(address: str) -> tuple[str, int]:
    """HOST:PORT, ray://HOST:PORT or [IPv6]:PORT split; a one-line error for anything else."""
    text = address if "://" in address else f"//{address}"
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise SweepError(f"Ray address {address!r} is not HOST:PORT; give the head node's address and GCS port "
                         f"(`ray status` on the head prints it; 6379 by default)")
    return host, port


def check_reachable(cluster: Cluster, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line SweepError unless a Ray cluster's GCS (an HTTP/2 server) answers at
    the cluster's address within about `timeout` seconds."""
    if cluster.local:
        return
    address = cluster.address
    assert address is not None, "a cluster that is not local has an address"
    host, port = host_and_port(address)
    where = f"the Ray cluster at {address} (from {cluster.source})"
    fix = "or run with --local to start Ray on this machine"
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise SweepError(f"cannot join {where}: host {host!r} is unknown; check the address, {fix}") from None
    except ConnectionRefusedError:
        hint = ("is the cluster still up? `ray start --head` begins one; " if "started on this node" in cluster.source
                else "check the address and that the head node runs Ray (`ray status` there), ")
        raise SweepError(f"cannot join {where}: nothing listens at port {port}; {hint}{fix}") from None
    except TimeoutError:
        raise SweepError(f"cannot join {where}: no answer within {timeout:g} s; check the address and that this "
                         f"machine reaches port {port} (firewall, security group), {fix}") from None
    except OSError as err:
        raise SweepError(f"cannot join {where}: {err.strerror or err}; check the address, {fix}") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0") not in ("0", ""):
            return  # a TLS handshake comes first: the port's answer is all we check
        if not _answers_http2(conn, timeout):
            raise SweepError(f"cannot join {where}: port {port} answers, but not as a Ray cluster does; give the "
                             f"head's GCS port (`ray status` on the head prints it; 6379 by default), {fix}")


# An HTTP/2 client's opening: the connection preface, then an empty SETTINGS frame.
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + bytes([0x4, 0x0]) + struct.pack(">I", 0)
_SETTINGS = 0x4


def _answers_http2(conn: socket.socket, timeout: float) -> bool:
    """True when the server's first frame is an HTTP/2 SETTINGS frame, as gRPC servers send."""
    conn.settimeout(timeout)
    try:
        conn.sendall(_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = conn.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except OSError:
        return False
    return header[3] == _SETTINGS and header[5:9] == b"\x00\x00\x00\x00"
