"""A cloud's notice that it will take this node back (a spot or preemptible instance), read
from the instance metadata service, where the cloud says so minutes ahead:

- AWS: `http://169.254.169.254/latest/meta-data/spot/instance-action` answers 404 until the
  instance is to be reclaimed, then `{"action": "terminate", "time": "..."}` (two minutes
  ahead). IMDSv2's session token is asked for first (`PUT /latest/api/token`);
  an endpoint that has no tokens (IMDSv1) is read without one.
- GCP: `http://metadata.google.internal/computeMetadata/v1/instance/preempted` answers `TRUE`
  once the instance is being preempted (30 s ahead), with the header `Metadata-Flavor: Google`.

The URL is `$RESWEEP_SPOT_NOTICE_URL` on the node (`cluster.yaml` sets AWS's on its spot
workers), read every `$RESWEEP_SPOT_NOTICE_POLL_S` seconds (5); unset, nothing is
asked. Standard library only: a trial actor imports it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

NOTICE_URL_ENV = "RESWEEP_SPOT_NOTICE_URL"
POLL_ENV = "RESWEEP_SPOT_NOTICE_POLL_S"  # how often it is read: AWS advises every 5 s
TIMEOUT_S = 2.0  # a metadata service answers in milliseconds; one that does not is none
AWS_NOTICE_LEAD_S = 120.0
GCP_NOTICE_LEAD_S = 30.0


@dataclass(frozen=True)
class Notice:
    """The node will be taken back at `deadline` (seconds since the epoch)."""

    action: str  # "terminate", "stop", "hibernate" (AWS); "preempted" (GCP)
    deadline: float
    source: str  # the URL that said so

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.time())


def notice_url() -> str | None:
    return os.environ.get(NOTICE_URL_ENV) or None


def poll_s() -> float:
    return float(os.environ.get(POLL_ENV) or 5.0)


def _is_gcp(url: str) -> bool:
    return "/computeMetadata/" in urlsplit(url).path


def _aws_token(url: str) -> str | None:
    """An IMDSv2 session token from the metadata service of `url`; None where it has none."""
    parts = urlsplit(url)
    path = parts.path.split("/latest/")[0] + "/latest/api/token"
    request = urllib.request.Request(urlunsplit((parts.scheme, parts.netloc, path, "", "")), method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return answer.read().decode().strip() or None
    except urllib.error.HTTPError:
        return None  # IMDSv1: read without a token


def read_notice(url: str) -> Notice | None:
    """The notice at `url` now, or None when there is none. Raises OSError where the service
    does not answer."""
    if _is_gcp(url):
        request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            preempted = answer.read().decode().strip().upper() == "TRUE"
        return Notice("preempted", time.time() + GCP_NOTICE_LEAD_S, url) if preempted else None
    token = _aws_token(url)
    request = urllib.request.Request(url, headers={"X-aws-ec2-metadata-token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            body = answer.read().decode()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None  # no interruption scheduled
        raise
    try:
        data = json.loads(body)
        deadline = datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00")).timestamp()
        action = str(data.get("action", "terminate"))
    except (ValueError, KeyError, TypeError):
        deadline, action = time.time() + AWS_NOTICE_LEAD_S, "terminate"  # a notice all the same
    return Notice(action, deadline, url)


class NoticeWatcher:
    """Reads the notice every `poll_s()` seconds in a daemon thread; `heard` is the first one read.
    `on_notice(notice)` runs once, in that thread, when it comes. A service that does not
    answer is asked again at the next poll."""

    def __init__(self, url: str, on_notice=None):
        self.url, self.poll_s, self.on_notice = url, poll_s(), on_notice
        self.heard: Notice | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="resweep-notice", daemon=True)

    def start(self) -> NoticeWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                notice = read_notice(self.url)
            except (OSError, ValueError):
                notice = None
            if notice is not None:
                self.heard = notice
                if self.on_notice is not None:
                    self.on_notice(notice)
                return
            self._stop.wait(self.poll_s)
