"""The web app as ``digest web`` serves it, over real sockets: which client address the rate
limits see, with and without a trusted proxy; slow clients cut off while others are served;
/metrics on a listener of its own."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from digest.settings import Settings
from digest.web import create_app
from digest.web.serving import WebServers
from tests.conftest import free_port
from tests.test_web import Clock, seed


@contextmanager
def serving(
    engine: Engine, settings: Settings, forwarded: tuple[str, ...] = (), **changes: Any
) -> Iterator[str]:
    """``WebServers`` on a free loopback port; yields the base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site = settings.replace(base_url=base, **changes)
    servers = WebServers(
        create_app(site, engine, clock=Clock()),
        site,
        host="127.0.0.1",
        port=port,
        forwarded_allow_ips=forwarded,
        log_level="warning",
    )
    servers.start()
    try:
        yield base
    finally:
        servers.stop()


def _subscribe_from(client: httpx.Client, forwarded_for: str) -> int:
    """A subscribe POST (refused for its missing CSRF token, after the rate limit)."""
    headers = {"X-Forwarded-For": forwarded_for}
    return client.post("/subscribe", data={"email": "x@example.org"}, headers=headers).status_code


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    engine: Engine, settings: Settings
) -> None:
    """uvicorn believed X-Forwarded-For from 127.0.0.1: a new header, a new rate-limit bucket."""
    seed(engine)
    with (
        serving(engine, settings, subscribe_rate_limit=2) as base,
        httpx.Client(base_url=base) as client,
    ):
        codes = [_subscribe_from(client, f"203.0.113.{i}") for i in range(3)]
    assert codes == [403, 403, 429]  # one client, whatever the header says

    with (
        serving(engine, settings, forwarded=("127.0.0.1",), subscribe_rate_limit=2) as base,
        httpx.Client(base_url=base) as client,
    ):
        codes = [_subscribe_from(client, f"203.0.113.{i}") for i in range(3)]
        assert codes == [403, 403, 403]  # three visitors behind the proxy
        codes = [_subscribe_from(client, "198.51.100.7, 203.0.113.9") for _ in range(3)]
        assert codes == [403, 403, 429]  # the proxy appends: the last address is the visitor's


def _trickle(port: int, head: bytes, stop: threading.Event) -> tuple[float, bytes]:
    """Send ``head`` then a byte every 0.3 s; return when and what the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.settimeout(0.3)
        answer = b""
        while not stop.is_set() and time.monotonic() - started < 30:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                try:
                    sock.sendall(b"a")
                except OSError:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        return time.monotonic() - started, answer


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_slow_client_is_cut_off_while_others_are_served(
    engine: Engine, settings: Settings, part: str
) -> None:
    seed(engine)
    with serving(engine, settings, web_request_timeout_seconds=2.0) as base:
        port = int(base.rsplit(":", 1)[1])
        host = f"Host: 127.0.0.1:{port}\r\n".encode()
        if part == "headers":
            head = b"GET /subscribe HTTP/1.1\r\n" + host + b"X-Slow: a"
        else:
            head = (
                b"POST /subscribe HTTP/1.1\r\n" + host + b"Content-Type: "
                b"application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\nemail="
            )
        stop = threading.Event()
        result: list[tuple[float, bytes]] = []
        slow = threading.Thread(target=lambda: result.append(_trickle(port, head, stop)))
        slow.start()
        served = 0
        with httpx.Client(base_url=base) as client:
            while slow.is_alive() and served < 500:
                assert client.get("/healthz").status_code == 200
                served += 1
                time.sleep(0.05)
        stop.set()
        slow.join()
    [(elapsed, answer)] = result
    assert served >= 5  # others were served all along
    assert 1.5 <= elapsed < 20, elapsed  # cut off at the deadline, not held open
    if part == "headers":
        assert answer.startswith(b"HTTP/1.1 408 ")
    else:
        assert b"200 OK" not in answer


def test_a_connection_that_sends_nothing_is_closed_silently(
    engine: Engine, settings: Settings
) -> None:
    with serving(engine, settings, web_request_timeout_seconds=1.0) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert time.monotonic() - started >= 0.8


def test_keep_alive_requests_each_get_their_own_deadline(
    engine: Engine, settings: Settings
) -> None:
    seed(engine)
    with serving(engine, settings, web_request_timeout_seconds=1.0) as base:
        with httpx.Client(base_url=base) as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
                time.sleep(0.6)  # over half the deadline between requests, on one connection


def test_metrics_on_their_own_listener(engine: Engine, settings: Settings) -> None:
    seed(engine)
    metrics_port = free_port()
    with serving(engine, settings, metrics_listen=f"127.0.0.1:{metrics_port}") as base:
        assert httpx.get(f"{base}/metrics").status_code == 404
        answer = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert answer.status_code == 200
        assert 'digest_members{status="active"} 2' in answer.text
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/subscribe").status_code == 404


def test_web_and_serve_take_forwarded_allow_ips() -> None:
    from digest.cli import main

    for command in ("web", "serve"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "--forwarded-allow-ips" in result.output
