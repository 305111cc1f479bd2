"""FastAPI app of the simulator: the Graph endpoints `GraphAPI` calls, plus `/_simulator/*`
controls for demos (inbox, failure injection, make a user write, report a status)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import httpx
from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from zapbase.simulator.faults import CannedError, meta_error
from zapbase.simulator.phone import SimulatedUser
from zapbase.simulator.state import ReceivedMessage, SimNumber, Simulator, SimulatorConfig
from zapbase.simulator.templates import cursor, uncursor
from zapbase.simulator.validate import Invalid, check_send
from zapbase.whatsapp.errors import MessageValidationError
from zapbase.whatsapp.messages import check_media_upload

__all__ = ["create_app", "simulator_of"]

_logger = logging.getLogger(__name__)

_HEADERS = {"X-Zapbase-Simulator": "local stand-in for the WhatsApp Cloud API, not Meta"}
_VERSION = re.compile(r"v\d+\.\d+")


class FaultRequest(BaseModel):
    code: int | None = None
    http_status: int | None = Field(default=None, ge=400, le=599)
    phone_number_id: str | None = None
    to: str | None = None
    times: int = Field(default=1, ge=1, le=1000)


class UserMessageRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4096)
    name: str = "Maria Silva"
    phone_number_id: str | None = None


class StatusRequest(BaseModel):
    status: Literal["sent", "delivered", "read", "played", "failed"]
    error_code: int | None = None  # with status "failed"


def _json(content: object, status_code: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status_code, headers=_HEADERS)


def _fault(fault: CannedError) -> Response:
    return Response(
        fault.body, status_code=fault.http_status, media_type=fault.content_type, headers=_HEADERS
    )


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _not_found(object_id: str) -> CannedError:
    return meta_error(
        100,
        subcode=33,
        details=(
            f"Unsupported request. Object with ID '{object_id}' does not exist, cannot be loaded "
            "due to missing permissions, or does not support this operation."
        ),
    )


def _bad_token() -> CannedError:
    return meta_error(190, message="Invalid OAuth access token - Cannot parse access token")


def simulator_of(app: FastAPI) -> Simulator:
    """The `Simulator` behind an app made by `create_app`."""
    sim = getattr(app.state, "simulator", None)
    if not isinstance(sim, Simulator):
        raise TypeError("this app was not made by zapbase.simulator.create_app")
    return sim


def _public(message: ReceivedMessage) -> dict[str, Any]:
    return {
        "wamid": message.wamid,
        "phone_number_id": message.phone_number_id,
        "wa_id": message.wa_id,
        "user_id": message.user_id,
        "type": message.type,
        "text": message.text,
        "body": message.body,
        "received_at": message.received_at,
    }


def create_app(
    config: SimulatorConfig | None = None,
    *,
    simulator: Simulator | None = None,
    client: httpx.AsyncClient | None = None,
) -> FastAPI:
    """Build the simulator app around `simulator` (or a new one made from `config`).

    `client` carries the webhooks the controls and `auto_statuses` post; without
    it each such action opens a short-lived client.
    """
    if simulator is not None and config is not None:
        raise ValueError("pass config or simulator, not both")
    sim = simulator or Simulator(config or SimulatorConfig())
    app = FastAPI(
        title="Zapbase WhatsApp Cloud API simulator",
        description="A local stand-in for tests and demos. It is not Meta and talks to no one.",
        docs_url="/_simulator/docs",
        openapi_url="/_simulator/openapi.json",
        redoc_url=None,
    )
    app.state.simulator = sim

    @asynccontextmanager
    async def webhook_http() -> AsyncIterator[httpx.AsyncClient]:
        if client is not None:
            yield client
        else:
            async with httpx.AsyncClient(timeout=10.0) as fresh:
                yield fresh

    def authorize(request: Request, version: str, phone_number_id: str) -> SimNumber | CannedError:
        if not _VERSION.fullmatch(version):
            return meta_error(2500, details=f"Unknown path components: /{version}")
        number = sim.number(phone_number_id)
        if number is None:
            return _not_found(phone_number_id)
        if _bearer(request) != number.access_token:
            return _bad_token()
        return number

    async def auto_status(message: ReceivedMessage) -> None:
        if message.wa_id is None or not sim.config.webhook_url:
            return
        async with webhook_http() as http:
            user = SimulatedUser(sim, http, wa_id=message.wa_id, phone_number_id=message.phone_number_id)
            for status in ("sent", "delivered"):
                await redeliver(user, message.wamid, status)

    async def redeliver(user: SimulatedUser, wamid: str, status: str) -> None:
        """Post a status until the receiver answers 2xx: at once, then with growing pauses,
        for `webhook_retry_s` (Meta redelivers for days; a receiver must survive duplicates)."""
        deadline = time.monotonic() + sim.config.webhook_retry_s
        pause = 0.0
        while True:
            try:
                delivery = await user.report_status(wamid, status)
                if delivery.accepted:
                    return
                problem = f"HTTP {delivery.status_code}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if time.monotonic() + pause > deadline:
                _logger.warning("auto status %s for %s not delivered: %s", status, wamid, problem)
                return
            await anyio.sleep(pause)
            pause = min(max(pause * 2, 0.5), 30.0)

    # -- controls (registered first: /{version}/{media_id} would swallow them) ------------

    @app.get("/_simulator/inbox")
    async def inbox(wa_id: str | None = None, phone_number_id: str | None = None) -> Response:
        messages = (
            sim.messages_to(wa_id, phone_number_id=phone_number_id)
            if wa_id
            else [m for m in sim.inbox if phone_number_id in (None, m.phone_number_id)]
        )
        return _json({"data": [_public(m) for m in messages]})

    @app.post("/_simulator/faults", status_code=201)
    async def queue_fault(request: FaultRequest) -> Response:
        try:
            fault = sim.fail_next_send(
                request.code,
                http_status=request.http_status,
                phone_number_id=request.phone_number_id,
                to=request.to,
                times=request.times,
            )
        except ValueError as exc:
            return _json({"detail": str(exc)}, 422)
        return _json({"queued": request.times, "http_status": fault.http_status}, 201)

    @app.post("/_simulator/users/{wa_id}/messages")
    async def user_writes(wa_id: str, request: UserMessageRequest) -> Response:
        if not sim.config.webhook_url:
            return _json({"detail": "no webhook_url configured"}, 409)
        async with webhook_http() as http:
            user = SimulatedUser(
                sim, http, wa_id=wa_id, name=request.name, phone_number_id=request.phone_number_id
            )
            delivery = await user.send_text(request.text)
        return _json({"wamid": delivery.wamid, "webhook_status": delivery.status_code})

    # Meta wamids are standard base64 and may hold "/".
    @app.post("/_simulator/messages/{wamid:path}/status")
    async def report_status(wamid: str, request: StatusRequest) -> Response:
        message = sim.find(wamid)
        if message is None or message.wa_id is None:
            return _json({"detail": f"no message {wamid} sent to a phone number"}, 404)
        if not sim.config.webhook_url:
            return _json({"detail": "no webhook_url configured"}, 409)
        async with webhook_http() as http:
            user = SimulatedUser(sim, http, wa_id=message.wa_id, phone_number_id=message.phone_number_id)
            if request.status == "failed":
                delivery = await user.report_failure(wamid, request.error_code or 131026)
            else:
                delivery = await user.report_status(wamid, request.status)
        return _json({"webhook_status": delivery.status_code})

    @app.get("/_simulator/media/{token}")
    async def download(token: str, request: Request) -> Response:
        media = sim.open_url(token)
        if media is None:
            return Response(b"URL expired or unknown", status_code=404, headers=_HEADERS)
        owner = sim.number(media.owner)
        if owner is None or _bearer(request) != owner.access_token:
            return Response(b"Bearer token required", status_code=401, headers=_HEADERS)
        status = sim.take_download_fault(media.id)
        if status is not None:
            return Response(b"Simulated failure", status_code=status, headers=_HEADERS)
        return Response(media.content, media_type=media.mime_type, headers=_HEADERS)

    # -- Graph API ---------------------------------------------------------------------------

    @app.post("/{version}/{phone_number_id}/messages")
    async def messages(
        version: str, phone_number_id: str, request: Request, background: BackgroundTasks
    ) -> Response:
        number = authorize(request, version, phone_number_id)
        if isinstance(number, CannedError):
            return _fault(number)
        try:
            body: object = json.loads(await request.body())
        except ValueError:
            return _fault(meta_error(100, details="The request body is not valid JSON."))
        if not isinstance(body, Mapping):
            return _fault(meta_error(100, details="The request body must be a JSON object."))
        if body.get("status") == "read":
            return mark_read(phone_number_id, body)

        def owned(media_id: str) -> bool:
            media = sim.media(media_id)
            return media is not None and media.owner == phone_number_id

        try:
            target = check_send(body, media_exists=owned)
        except Invalid as exc:
            return _fault(meta_error(exc.code, details=exc.details))
        fault = sim.take_send_fault(phone_number_id, target.wa_id or target.user_id)
        if fault is not None:
            return _fault(fault)
        if (
            sim.config.enforce_window
            and body["type"] != "template"
            and not (target.wa_id and sim.window_open(phone_number_id, target.wa_id))
        ):
            return _fault(meta_error(131047))
        message = sim.accept(phone_number_id, body, wa_id=target.wa_id, user_id=target.user_id)
        if sim.config.auto_statuses:
            background.add_task(auto_status, message)
        contact = (
            {"input": body["to"], "wa_id": target.wa_id}
            if target.wa_id
            else {"input": body["recipient"], "user_id": target.user_id}
        )
        sent: dict[str, str] = {"id": message.wamid}
        if message.type == "template":
            sent["message_status"] = "accepted"
        return _json({"messaging_product": "whatsapp", "contacts": [contact], "messages": [sent]})

    def mark_read(phone_number_id: str, body: Mapping[str, Any]) -> Response:
        message_id = body.get("message_id")
        if body.get("messaging_product") != "whatsapp" or not isinstance(message_id, str):
            return _fault(meta_error(100, details="status read needs messaging_product, message_id"))
        typing = body.get("typing_indicator")
        sim.mark_read(phone_number_id, message_id, typing=isinstance(typing, Mapping))
        return _json({"success": True})

    def authorize_waba(request: Request, version: str, waba_id: str) -> CannedError | None:
        if not _VERSION.fullmatch(version):
            return meta_error(2500, details=f"Unknown path components: /{version}")
        tokens = sim.waba_tokens(waba_id)
        if not tokens:
            return _not_found(waba_id)
        return None if _bearer(request) in tokens else _bad_token()

    @app.get("/{version}/{waba_id}/message_templates")
    async def list_templates(version: str, waba_id: str, request: Request) -> Response:
        denied = authorize_waba(request, version, waba_id)
        if denied is not None:
            return _fault(denied)
        limit = request.query_params.get("limit", "25")
        after = request.query_params.get("after")
        last = uncursor(after) if after is not None else -1
        if not limit.isdigit() or not 1 <= int(limit) <= 1000 or last is None:
            return _fault(meta_error(100, details="limit must be 1 to 1000 and after a cursor of this list"))
        templates = sim.templates.all(waba_id)
        start = last + 1
        page = templates[start : start + int(limit)]
        paging: dict[str, Any] = {}
        if page:
            paging["cursors"] = {"before": cursor(start), "after": cursor(start + len(page) - 1)}
            if start + len(page) < len(templates):
                query = httpx.QueryParams(request.query_params).set("after", paging["cursors"]["after"])
                paging["next"] = str(request.url.replace(query=str(query)))
        return _json({"data": page, "paging": paging})

    @app.post("/{version}/{waba_id}/message_templates")
    async def create_template(version: str, waba_id: str, request: Request) -> Response:
        denied = authorize_waba(request, version, waba_id)
        if denied is not None:
            return _fault(denied)
        try:
            body: object = json.loads(await request.body())
        except ValueError:
            return _fault(meta_error(100, details="The request body is not valid JSON."))
        if not isinstance(body, Mapping):
            return _fault(meta_error(100, details="The request body must be a JSON object."))
        created = sim.templates.create(waba_id, body)
        if isinstance(created, CannedError):
            return _fault(created)
        return _json({"id": created["id"], "status": created["status"], "category": created["category"]})

    @app.delete("/{version}/{waba_id}/message_templates")
    async def delete_template(version: str, waba_id: str, request: Request) -> Response:
        denied = authorize_waba(request, version, waba_id)
        if denied is not None:
            return _fault(denied)
        name = request.query_params.get("name")
        if not name:
            return _fault(meta_error(100, details="The parameter name is required."))
        if not sim.templates.delete(waba_id, name, request.query_params.get("hsm_id")):
            return _fault(meta_error(100, subcode=2593002, details=f"Message template {name} not found"))
        return _json({"success": True})

    @app.post("/{version}/{phone_number_id}/media")
    async def upload(version: str, phone_number_id: str, request: Request) -> Response:
        number = authorize(request, version, phone_number_id)
        if isinstance(number, CannedError):
            return _fault(number)
        # The context manager closes the spooled upload files.
        async with request.form() as form:
            file = form.get("file")
            if form.get("messaging_product") != "whatsapp" or not isinstance(file, UploadFile):
                return _fault(meta_error(100, details="Upload needs messaging_product=whatsapp and file"))
            content = await file.read()
            filename = file.filename
            declared = form.get("type")
            mime_type = declared if isinstance(declared, str) and declared else file.content_type
        if not mime_type:
            return _fault(meta_error(100, details="The parameter type is required."))
        try:
            check_media_upload(mime_type, len(content))
        except MessageValidationError as exc:
            return _fault(meta_error(131053, details=str(exc)))
        media = sim.store_media(
            owner=phone_number_id, content=content, mime_type=mime_type, filename=filename
        )
        return _json({"id": media.id})

    @app.get("/{version}/{media_id}")
    async def media_url(version: str, media_id: str, request: Request) -> Response:
        if not _VERSION.fullmatch(version):
            return _fault(meta_error(2500, details=f"Unknown path components: /{version}"))
        media = sim.media(media_id)
        owner = sim.number(media.owner) if media is not None else None
        if media is None or owner is None:
            return _fault(_not_found(media_id))
        if _bearer(request) != owner.access_token:
            return _fault(_bad_token())
        asked = request.query_params.get("phone_number_id")
        if asked is not None and asked != media.owner:
            return _fault(_not_found(media_id))
        return _json(
            {
                "messaging_product": "whatsapp",
                "url": sim.issue_url(media.id, str(request.base_url)),
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": media.file_size,
                "id": media.id,
            }
        )

    return app
