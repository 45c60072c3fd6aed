"""Serving the web app: uvicorn set up for the edge, and the optional metrics listener.

``digest web`` and ``digest serve`` both run ``WebServers``, so what is tested is what runs:

* Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are believed only from the
  proxies named in ``forwarded_allow_ips`` (none by default). uvicorn alone trusts 127.0.0.1,
  so any local caller could pick its own client address, and the per-address rate limits
  with it.
* Slow clients are cut off: uvicorn bounds the idle time between requests but not a request
  that arrives slowly, so ``TimedH11Protocol`` gives each request's headers, and then its
  body, ``web_request_timeout_seconds`` to arrive.
* ``metrics_listen`` serves ``/metrics`` (and ``/healthz``) on an address of their own, for
  a monitoring network, instead of on the public app.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.settings import Settings, listen_address
from digest.web.app import create_metrics_app

#: What a client that sent part of a request, too slowly, is told before the connection closes.
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 27\r\n"
    b"\r\n"
    b"The request took too long.\n"
)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for reading each request.

    The headers must arrive within ``request_timeout`` seconds of the request's first byte
    (of the connection, for the first request), and the body within as long again once the
    headers are in. Otherwise the connection is closed: with a 408 if the headers were still
    coming (a connection that sent nothing is closed silently, as browsers open spare ones),
    and the app, if it was waiting for the body, sees the client gone. Between requests
    uvicorn's own keep-alive timeout applies.
    """

    request_timeout: float = 15.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: Any = None
        self._phase = "headers"
        self._got_bytes = False
        self._arm("headers")

    def _arm(self, phase: str) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _follow(self) -> None:
        """Set the timer for where the request now is: headers, body, or all read."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body")
        elif state is not h11.IDLE:  # DONE, MUST_CLOSE, ...: the request is read
            self._disarm()
            self._phase = "read"

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._deadline is None:
            self._arm("headers")  # the next request on a kept-alive connection begins
        self._got_bytes = self._got_bytes or bool(data)
        super().data_received(data)
        if not self.transport.is_closing():
            self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:
            self._disarm()  # until the next request's first byte; keep-alive times the wait
            self._phase, self._got_bytes = "headers", False
        else:
            self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._phase == "read":
            return
        if self._phase == "headers" and self._got_bytes and self.conn.our_state is h11.IDLE:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.logger.info(
            "closing a connection from %s: its request %s did not arrive within %g s",
            self.client[0] if self.client else "?",
            self._phase,
            self.request_timeout,
        )
        self.transport.close()


def timed_protocol(seconds: float) -> type[TimedH11Protocol]:
    """``TimedH11Protocol`` with ``seconds`` as its deadline (uvicorn takes a class)."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"request_timeout": seconds})


def uvicorn_config(
    app: Any,
    settings: Settings,
    host: str,
    port: int,
    forwarded_allow_ips: Sequence[str] = (),
    log_level: str = "info",
) -> uvicorn.Config:
    """How the web app is served: forwarded headers only from the proxies named, request
    read deadlines, no Server header."""
    trusted = [ip for ip in forwarded_allow_ips if ip]
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted),  # "" rather than None: never $FORWARDED_ALLOW_IPS
        http=timed_protocol(settings.web_request_timeout_seconds),
        timeout_keep_alive=5,
        server_header=False,
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through our handler (text or JSON, as set)
        lifespan="off",
    )


class WebServers:
    """The web app's server and, with ``metrics_listen``, the metrics server, each in a thread.

    ``start`` returns once both listen (or raises ``RuntimeError`` naming the address that
    could not be opened); ``stop`` lets in-flight requests finish and closes both.
    """

    def __init__(
        self,
        app: Starlette,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        forwarded_allow_ips: Sequence[str] | None = None,
        log_level: str = "info",
    ) -> None:
        trusted = (
            settings.forwarded_allow_ips if forwarded_allow_ips is None else forwarded_allow_ips
        )
        main = uvicorn_config(
            app,
            settings,
            host or settings.web_host,
            settings.web_port if port is None else port,  # 0: any free port, logged at start
            trusted,
            log_level,
        )
        self.servers = [uvicorn.Server(main)]
        if settings.metrics_listen:
            metrics_host, metrics_port = listen_address(settings.metrics_listen)
            config = uvicorn_config(
                create_metrics_app(app), settings, metrics_host, metrics_port, (), log_level
            )
            self.servers.append(uvicorn.Server(config))
        self._threads: list[threading.Thread] = []

    @property
    def addresses(self) -> list[str]:
        return [f"{s.config.host}:{s.config.port}" for s in self.servers]

    def start(self, timeout: float = 30.0) -> None:
        for server in self.servers:
            thread = threading.Thread(target=server.run, name="digest-web", daemon=True)
            thread.start()
            self._threads.append(thread)
            deadline = time.monotonic() + timeout
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not server.started:  # e.g. the port is taken: uvicorn logged why
                self.stop()
                raise RuntimeError(
                    f"the web app could not start on {server.config.host}:{server.config.port}"
                )

    def request_stop(self) -> None:
        """Ask both servers to finish their requests and close (returns at once: a signal
        handler calls it)."""
        for server in self.servers:
            server.should_exit = True

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        for thread in self._threads:
            thread.join(timeout=timeout)

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def run(self) -> None:
        """Serve in the foreground until SIGTERM or SIGINT (``digest web``)."""
        stopping = threading.Event()

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            stopping.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stopping.wait(0.5) and self.alive():
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not stopping.is_set():
            raise RuntimeError("the web app stopped on its own (see the log above)")
