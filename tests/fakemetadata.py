"""A cloud instance-metadata service of the test's own, on 127.0.0.1: AWS's spot interruption
notice behind IMDSv2 tokens, and GCP's preempted flag. Each node of a one-machine cluster gets a
prefix of its own (`url_for("b")`), so the notice goes to one node, as a cloud gives it."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeMetadata:
    def __init__(self):
        self.noticed: dict[str, float] = {}  # node prefix -> when it is taken back
        self.tokens: set[str] = set()
        self.reads: dict[str, int] = {}  # node prefix -> notice reads answered
        self.told: dict[str, float] = {}  # node prefix -> when a read of it first got the notice
        self.tokenless: list[str] = []  # notice reads that came without a token (IMDSv1)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                if self.path.endswith("/latest/api/token") and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    token = secrets.token_hex(8)
                    owner.tokens.add(token)
                    return self._answer(200, token)
                self._answer(400)

            def do_GET(self):
                prefix = self.path.strip("/").split("/", 1)[0]
                owner.reads[prefix] = owner.reads.get(prefix, 0) + 1
                if self.path.endswith("/computeMetadata/v1/instance/preempted"):
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self._answer(403)
                    if prefix in owner.noticed:
                        owner.told.setdefault(prefix, time.time())
                    return self._answer(200, "TRUE" if prefix in owner.noticed else "FALSE")
                if self.path.endswith("/latest/meta-data/spot/instance-action"):
                    if self.headers.get("X-aws-ec2-metadata-token") not in owner.tokens:
                        owner.tokenless.append(self.path)
                        return self._answer(401)
                    if prefix not in owner.noticed:
                        return self._answer(404)
                    owner.told.setdefault(prefix, time.time())
                    when = datetime.fromtimestamp(owner.noticed[prefix], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    return self._answer(200, json.dumps({"action": "terminate", "time": when}))
                self._answer(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeMetadata:
        self.thread.start()
        return self

    def aws_url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{node}/latest/meta-data/spot/instance-action"

    def gcp_url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{node}/computeMetadata/v1/instance/preempted"

    def give_notice(self, node: str, lead_s: float = 120.0) -> None:
        self.noticed[node] = time.time() + lead_s

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
