"""Finding the Ray cluster Ray's way (--address, $RAY_ADDRESS, the cluster `ray start` began on
this node, else a local instance), and failing within seconds, in one line, where nothing or
something else answers. Real sockets on 127.0.0.1; no Ray cluster needed."""

import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.engine.cluster import Cluster, check_reachable, find_cluster, host_and_port, ray_address_file
from sweeps.errors import SweepError


@pytest.fixture
def ray_tmp(tmp_path, monkeypatch):
    """A Ray temp folder of this test's own: where `ray start` would note its cluster."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))
    (tmp_path / "raytmp" / "ray").mkdir(parents=True)
    return tmp_path / "raytmp" / "ray"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """A TCP server on 127.0.0.1 that answers each connection with `reply` (None: says nothing)."""

    def __init__(self, reply: bytes | None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply, self.open = reply, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.open.append(conn)
            if self.reply is not None:
                conn.sendall(self.reply)

    def close(self):
        for conn in self.open:
            conn.close()
        self.sock.close()


def test_the_address_file_is_where_ray_writes_it(monkeypatch, tmp_path):
    from ray._common.utils import get_ray_address_file

    for env in ({"RAY_TMPDIR": str(tmp_path / "a")}, {"TMPDIR": str(tmp_path / "b")}, {}):
        for key in ("RAY_TMPDIR", "TMPDIR"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert str(ray_address_file()) == get_ray_address_file(None)


def test_the_cluster_is_found_in_rays_order(ray_tmp, monkeypatch):
    assert find_cluster() == Cluster(None, "no cluster found")  # nothing anywhere: a local instance
    (ray_tmp / "ray_current_cluster").write_text("127.0.0.1:6001\n")
    started = find_cluster()
    assert started.address == "127.0.0.1:6001" and "started on this node" in started.source
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6002")
    assert find_cluster().address == "127.0.0.1:6002" and find_cluster().source == "$RAY_ADDRESS"
    assert find_cluster("127.0.0.1:6003").address == "127.0.0.1:6003"
    assert find_cluster("127.0.0.1:6003", local=True).local  # --local wins over everything
    assert find_cluster("auto").address == "127.0.0.1:6002"  # auto: the environment, then the file
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert find_cluster().local


def test_auto_without_a_cluster_is_refused(ray_tmp):
    with pytest.raises(SweepError, match="no Ray cluster was started on this node"):
        find_cluster("auto")


@pytest.mark.parametrize("address", ["foo", "127.0.0.1", "127.0.0.1:notaport", ":6379"])
def test_an_address_that_is_not_host_and_port_is_refused(address):
    with pytest.raises(SweepError, match="is not HOST:PORT"):
        host_and_port(address)


def test_host_and_port_forms():
    assert host_and_port("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert host_and_port("ray://head:10001") == ("head", 10001)
    assert host_and_port("[::1]:6379") == ("::1", 6379)


def test_nothing_listening_fails_at_once_naming_the_address():
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(SweepError) as err:
        check_reachable(Cluster(address, "--address"))
    assert time.monotonic() - start < 2
    assert f"cannot join the Ray cluster at {address} (from --address): nothing listens" in str(err.value)


def test_a_port_that_answers_but_is_no_ray_cluster_is_told_apart():
    http = Listener(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    silent = Listener(None)
    try:
        with pytest.raises(SweepError, match="answers, but not as a Ray cluster does"):
            check_reachable(Cluster(f"127.0.0.1:{http.port}", "--address"))
        start = time.monotonic()
        with pytest.raises(SweepError, match="answers, but not as a Ray cluster does"):
            check_reachable(Cluster(f"127.0.0.1:{silent.port}", "--address"), timeout=1.0)
        assert time.monotonic() - start < 3
    finally:
        http.close()
        silent.close()


def test_an_http2_server_passes_the_check():
    # an HTTP/2 server's first frame is SETTINGS (type 4) on stream 0, as a Ray GCS (gRPC) sends
    settings = Listener(bytes([0, 0, 6, 4, 0, 0, 0, 0, 0]) + bytes(6))
    try:
        check_reachable(Cluster(f"127.0.0.1:{settings.port}", "--address"))
    finally:
        settings.close()


def _one_line_error(result):
    lines = [line for line in result.output.strip().splitlines() if line]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_sweep_run_with_a_wrong_address_fails_in_seconds_in_one_line(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = CliRunner().invoke(app, ["run", "quickstart", "--address", address, "--storage", str(tmp_path)])
    seconds = time.monotonic() - start
    line = _one_line_error(result)
    print(f"{seconds:.2f} s: {line}")
    assert seconds < 15 and address in line and "--local" in line


def test_a_stale_cluster_note_on_this_node_is_named(ray_tmp, tmp_path):
    (ray_tmp / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["run", "quickstart", "--storage", str(tmp_path)])
    line = _one_line_error(result)
    assert "the cluster started on this node" in line and "ray start --head" in line


def test_only_a_local_sweep_checks_this_machines_gpus(ray_tmp, tmp_path, monkeypatch):
    """A GPU preset sent to a cluster is not refused for this machine's lack of a GPU: the
    refusal here is about the (unreachable) cluster, not the GPUs."""
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["run", "flowers-r50", "--storage", str(tmp_path)])
    line = _one_line_error(result)
    assert "from $RAY_ADDRESS" in line and "GPU" not in line
