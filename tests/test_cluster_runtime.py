"""The controller's machinery that needs no API server: work queue back-off, rate limit, health endpoints
(issue #17, part 2). Everything that talks to an API server is tested in tests/e2e/ against a real one."""
from __future__ import annotations

import time
import urllib.error
import urllib.request

from engine.cluster.client import RateLimiter
from engine.cluster.runtime import HealthServer, WorkQueue, backoff_delay, election_timing


def test_backoff_never_overflows_and_stays_jittered_within_the_cap():
    assert 30.0 <= backoff_delay(10**6, 0.2, 60.0) <= 60.0
    delays = {round(backoff_delay(3, 0.2, 60.0), 6) for _ in range(50)}
    assert len(delays) > 1 and all(0.8 <= d <= 1.6 for d in delays)


def test_a_key_failing_thousands_of_times_keeps_the_queue_working():
    queue = WorkQueue(base_delay=0.2, max_delay=60.0)
    for _ in range(2000):  # the old queue raised OverflowError after about 1,025 failures
        delay = queue.add_rate_limited("broken")
    assert delay <= 60.0
    queue.add("healthy")
    assert queue.get(timeout=1) == "healthy"


def test_rate_limiter_lets_a_burst_through_then_paces_at_qps():
    limiter = RateLimiter(qps=50, burst=5)
    start = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - start < 0.05
    for _ in range(10):
        limiter.wait()
    assert time.monotonic() - start >= 0.15  # 10 more at 50/s
    assert limiter.requests == 15


def test_renew_deadline_is_shorter_than_the_lease():
    deadline, retry = election_timing(15)
    assert deadline == 10 and retry == 2


def test_health_endpoints_say_what_is_wrong():
    state = {"healthz": None, "readyz": "TrafficRoutings not listed yet"}
    server = HealthServer(0, lambda: dict(state), address="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz") as response:
            assert response.status == 200 and response.read() == b"ok\n"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz")
            raise AssertionError("readyz must fail")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and exc.read() == b"TrafficRoutings not listed yet\n"
    finally:
        server.stop()
