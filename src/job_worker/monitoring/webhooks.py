"""Alert delivery to webhooks: JSON POSTs from background threads.

:func:`deliver` only puts the payload on a queue and returns: the worker (or
whoever fired the alert) never waits for a network call. Each webhook URL has
its own queue and daemon thread, so a dead or slow endpoint delays only its
own alerts. Each POST has a timeout and is retried with a growing pause;
an alert that cannot be delivered is logged with ``event=alert.webhook_failed``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

_logger = logging.getLogger(__name__)

#: seconds one POST may take
TIMEOUT = 5.0
#: attempts per alert, with a pause of RETRY_PAUSE * 2**n between them
ATTEMPTS = 3
RETRY_PAUSE = 1.0
#: alerts waiting for one URL beyond this are dropped (and logged)
QUEUE_SIZE = 100


@dataclass
class Delivery:
    url: str
    payload: dict[str, Any]
    timeout: float = TIMEOUT
    attempts: int = ATTEMPTS
    retry_pause: float = RETRY_PAUSE


class _Sender(threading.Thread):
    """The thread that POSTs the alerts of one URL, one after the other."""

    def __init__(self, url: str):
        super().__init__(name=f"job_worker-webhook-{url[:40]}", daemon=True)
        self.url = url
        self.queue: queue.Queue[Delivery] = queue.Queue(QUEUE_SIZE)
        self.idle = threading.Event()
        self.idle.set()

    def run(self) -> None:
        while True:
            delivery = self.queue.get()
            try:
                post(delivery)
            finally:
                self.queue.task_done()
                if self.queue.unfinished_tasks == 0:
                    self.idle.set()


_senders: dict[str, _Sender] = {}
_lock = threading.Lock()


def deliver(delivery: Delivery) -> bool:
    """Queue ``delivery`` for its URL's sender thread; False when that queue is full."""
    with _lock:
        sender = _senders.get(delivery.url)
        if sender is None or not sender.is_alive():
            sender = _senders[delivery.url] = _Sender(delivery.url)
            sender.start()
        sender.idle.clear()
    try:
        sender.queue.put_nowait(delivery)
    except queue.Full:
        _logger.error(
            "webhook queue full for %s: alert dropped",
            delivery.url,
            extra={"event": "alert.webhook_dropped", "url": delivery.url},
        )
        return False
    return True


def wait_idle(timeout: float) -> bool:
    """Wait until every sender has nothing left to send (tests, clean shutdowns)."""
    deadline = time.monotonic() + timeout
    with _lock:
        senders = list(_senders.values())
    return all(sender.idle.wait(max(0.0, deadline - time.monotonic())) for sender in senders)


def post(delivery: Delivery) -> bool:
    """POST the payload as JSON, retrying; True once the endpoint answered 2xx."""
    import urllib.error  # here: a command that sends no alert does not load HTTP
    import urllib.request

    body = json.dumps(delivery.payload, default=str).encode()
    for attempt in range(1, delivery.attempts + 1):
        request = urllib.request.Request(
            delivery.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "job-worker-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=delivery.timeout) as response:
                if 200 <= response.status < 300:
                    return True
                error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = str(exc)
        _logger.warning(
            "webhook %s attempt %d/%d failed: %s",
            delivery.url,
            attempt,
            delivery.attempts,
            error,
            extra={"event": "alert.webhook_retry", "url": delivery.url, "attempt": attempt},
        )
        if attempt < delivery.attempts:
            time.sleep(delivery.retry_pause * 2 ** (attempt - 1))
    _logger.error(
        "webhook %s: alert not delivered after %d attempts",
        delivery.url,
        delivery.attempts,
        extra={
            "event": "alert.webhook_failed",
            "url": delivery.url,
            "rule": delivery.payload.get("rule"),
        },
    )
    return False
