"""A TCP proxy of the tests' own, on 127.0.0.1, in front of a real server (the S3 server): it
passes bytes both ways until told to fail, then refuses new connections (its port closed) and
drops the open ones, as a store restarting or a NAT gateway blinking does, until told to
recover. Threads only; `close()` ends everything it started."""

from __future__ import annotations

import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._held: socket.socket | None = None  # the port, bound and not listening, while down
        self._closed = False
        self.outages: list[tuple[float, float]] = []  # (start, end) of each outage, time.time()
        self.refused = 0  # connections refused or dropped while out: proof the clients met the outage
        self.up()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        """Listen again (the same port) and pass traffic."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._held is not None:
            self._held.close()
            self._held = None
        deadline = time.time() + 10
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        listener.listen(128)
        self._listener = listener
        if self.outages and self.outages[-1][1] == 0.0:
            self.outages[-1] = (self.outages[-1][0], time.time())
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        self.outages.append((time.time(), 0.0))
        if listener is not None:
            # shutdown first: close() alone leaves the socket listening while _accept's thread is
            # blocked in accept(), and the port cannot be held now nor bound again in up()
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
            # hold the port while down: a socket bound but not listening refuses connections as a
            # closed port does, and no other process asking for a free port is given it
            held = socket.socket()
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                held.bind(("127.0.0.1", self.port))
                self._held = held
            except OSError:
                held.close()
        for conn in conns:
            self.refused += 1
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def outage(self, seconds: float) -> None:
        """Down for `seconds`, then up again (in the caller's thread)."""
        self.down()
        time.sleep(seconds)
        self.up()

    def close(self) -> None:
        self._closed = True
        self.down()
        if self._held is not None:
            self._held.close()
            self._held = None
        self.outages[-1] = (self.outages[-1][0], time.time())

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: down() or close()
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                self._conns = [c for c in self._conns if c not in (source, sink)]
