"""Provider webhooks: ``POST /webhooks/ses|mailgun|postmark|sendgrid``.

HTTP handlers over ``digest.feedback.hooks``: read the body, pass the headers a provider signs
with, answer. A refused request (bad signature, stale timestamp, replay, wrong topic,
provider not configured) gets its 4xx and is logged with the client's address; nothing
changes. These routes take no CSRF token or cookie: the provider's signature is the credential.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest.feedback.hooks import Answer
from digest.feedback.providers import WebhookRefused
from digest.web.context import web_context
from digest.web.security import client_address

log = logging.getLogger(__name__)

#: The largest webhook body read: SendGrid batches events, SES may include headers.
MAX_WEBHOOK_BYTES = 1024 * 1024


async def _answer(request: Request, provider: str) -> Response:
    ctx = web_context(request)
    hooks = ctx.webhooks
    body = await request.body()
    headers = request.headers
    calls = {
        "ses": lambda: hooks.ses(body),
        "mailgun": lambda: hooks.mailgun(body),
        "postmark": lambda: hooks.postmark(body, headers.get("authorization")),
        "sendgrid": lambda: hooks.sendgrid(
            body,
            headers.get("x-twilio-email-event-webhook-signature"),
            headers.get("x-twilio-email-event-webhook-timestamp"),
        ),
    }
    try:
        answer: Answer = await run_in_threadpool(calls[provider])
    except WebhookRefused as exc:
        log.warning(
            "webhook %s from %s refused (%s): %s",
            provider,
            client_address(request),
            exc.status,
            exc.reason,
        )
        extra = {"WWW-Authenticate": 'Basic realm="webhooks"'} if exc.status == 401 else None
        return PlainTextResponse(f"{exc.reason}\n", status_code=exc.status, headers=extra)
    return PlainTextResponse(f"{answer.text}\n", status_code=answer.status)


async def ses(request: Request) -> Response:
    return await _answer(request, "ses")


async def mailgun(request: Request) -> Response:
    return await _answer(request, "mailgun")


async def postmark(request: Request) -> Response:
    return await _answer(request, "postmark")


async def sendgrid(request: Request) -> Response:
    return await _answer(request, "sendgrid")


ROUTES = [
    Route("/webhooks/ses", ses, methods=["POST"]),
    Route("/webhooks/mailgun", mailgun, methods=["POST"]),
    Route("/webhooks/postmark", postmark, methods=["POST"]),
    Route("/webhooks/sendgrid", sendgrid, methods=["POST"]),
]
