"""Local stand-ins for the Anthropic and OpenAI HTTP APIs, speaking their wire formats.

Tests, benchmarks and the offline demo use them instead of the network. Each stand-in
is a FastAPI app with a scripted queue of replies and faults (rendered exactly as the
real API renders them: status, headers and error body), a default reply and usage, and
a simulated latency (0 = zero-latency mode, for benchmarks).

In-process::

    anthropic_fake = AnthropicStandIn()
    anthropic_fake.push(Fault(kind=FaultKind.OVERLOADED), Reply(text="Oi!"))
    # The anthropic SDK 2.x is built on httpx2, so it needs an httpx2 transport.
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=anthropic_fake.app))
    provider = AnthropicProvider(api_key="k", base_url="http://anthropic.test", client=http)

    openai_fake = OpenAIStandIn()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=openai_fake.app))
    # Groq, Gemini or OpenRouter: the same protocol under another path
    groq_fake = OpenAIStandIn(base_path="/openai/v1")

Standalone: `uvicorn --factory zapbase.standins.ai:anthropic_app --port 8401` (or
`openai_app`), scripted over HTTP with `POST /_standin/script` and a JSON list such as
`[{"kind": "overloaded"}, {"kind": "reply", "text": "Oi!"}]`.
"""

from __future__ import annotations

import abc
import enum
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from zapbase.ai.types import Usage
from zapbase.knowledge.embedders import HashingEmbedder

__all__ = [
    "AnthropicStandIn",
    "Fault",
    "FaultKind",
    "OpenAIStandIn",
    "RecordedCall",
    "Reply",
    "anthropic_app",
    "openai_app",
]

# Requests left hanging this long by a TIMEOUT fault unless it says otherwise.
_DEFAULT_HANG_S = 60.0
# API version from which Anthropic rejects sampling parameters.
_NO_SAMPLING_VERSION = "2026-10-21"


class FaultKind(enum.StrEnum):
    RATE_LIMIT = "rate_limit"
    SPEND_LIMIT = "spend_limit"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONTEXT_TOO_LONG = "context_too_long"
    AUTH = "auth"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """The next call fails; TIMEOUT hangs `delay_s` (default 60 s) before answering."""

    kind: FaultKind
    retry_after: float | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The next call succeeds, with this text/usage instead of the stand-in's defaults."""

    text: str | None = None
    usage: Usage | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedCall:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _Err(NamedTuple):
    status: int
    type: str
    message: str
    code: str | None = None


class _ScriptStep(BaseModel):
    kind: Literal["reply"] | FaultKind
    text: str | None = None
    retry_after: float | None = None
    delay_s: float = 0.0


_Body = TypeVar("_Body", bound=BaseModel)


@dataclass(slots=True, kw_only=True)
class _StandIn(abc.ABC):
    """Script, recording and the request pipeline shared by both stand-ins.

    Parameters:
        reply_text: answer of every call the script does not override.
        usage: reported usage (Zapbase's normalised form, rendered in the wire format);
            None estimates it from text lengths (4 characters a token).
        latency_ms: simulated latency of every call; 0 is the zero-latency mode.
        api_key: the only key accepted; None accepts any non-empty key.

    `push()` queues replies and faults, consumed one per call; `calls` keeps the last
    1,000 requests received (path, headers, JSON body or form fields).
    """

    reply_text: str = "Olá! Como posso ajudar?"
    usage: Usage | None = None
    latency_ms: float = 0.0
    api_key: str | None = None
    script: deque[Fault | Reply] = field(default_factory=deque)
    calls: deque[RecordedCall] = field(default_factory=lambda: deque(maxlen=1000))
    app: FastAPI = field(init=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    request_id_header: ClassVar[str]
    faults: ClassVar[dict[FaultKind, _Err]]

    @abc.abstractmethod
    def _error_body(self, err: _Err, rid: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _check_headers(self, request: Request) -> _Err | None: ...

    def push(self, *steps: Fault | Reply) -> None:
        self.script.extend(steps)

    def calls_to(self, path: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.path == path]

    def _new_app(self, title: str, routes: dict[str, Any]) -> None:
        self.app = FastAPI(title=title)
        for path, endpoint in routes.items():
            self.app.add_api_route(path, endpoint, methods=["POST"])
        self.app.add_api_route("/_standin/script", self._script, methods=["POST"], status_code=204)

    async def _script(self, steps: list[_ScriptStep]) -> Response:
        for s in steps:
            if s.kind == "reply":
                self.push(Reply(text=s.text, delay_s=s.delay_s))
            else:
                self.push(Fault(kind=s.kind, retry_after=s.retry_after, delay_s=s.delay_s))
        return Response(status_code=204)

    def _rid(self) -> str:
        return f"req_standin{next(self._ids):012d}"

    def _json(
        self, body: dict[str, Any], rid: str, status: int = 200, retry_after: float | None = None
    ) -> JSONResponse:
        headers = {self.request_id_header: rid}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        return JSONResponse(body, status_code=status, headers=headers)

    def _error(self, err: _Err, rid: str, retry_after: float | None = None) -> JSONResponse:
        return self._json(self._error_body(err, rid), rid, err.status, retry_after)

    async def _parse(
        self, request: Request, rid: str, model: type[_Body]
    ) -> tuple[dict[str, Any], _Body] | JSONResponse:
        if (denied := self._check_headers(request)) is not None:
            return self._error(denied, rid)
        try:
            payload = await request.json()
            return payload, model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return self._error(_Err(400, "invalid_request_error", f"{where}: {first['msg']}"), rid)
        except ValueError:
            return self._error(_Err(400, "invalid_request_error", "invalid JSON body"), rid)

    async def _step(self, request: Request, rid: str, record: dict[str, Any]) -> Reply | JSONResponse:
        """Record the call, wait the simulated latency, then pop the script."""
        self.calls.append(RecordedCall(path=request.url.path, headers=dict(request.headers), body=record))
        step = self.script.popleft() if self.script else Reply()
        delay = self.latency_ms / 1000 + step.delay_s
        if isinstance(step, Fault) and step.kind is FaultKind.TIMEOUT:
            delay = self.latency_ms / 1000 + (step.delay_s or _DEFAULT_HANG_S)
            step = Reply()
        if delay > 0:  # zero-latency mode never yields to the event loop
            await anyio.sleep(delay)
        if isinstance(step, Fault):
            return self._error(self.faults[step.kind], rid, step.retry_after)
        return step

    def _reply(self, step: Reply, prompt_chars: int, max_tokens: int) -> tuple[str, Usage, bool]:
        """Reply text (cut at max_tokens like a real model), usage, and whether it was cut."""
        text = step.text or self.reply_text
        truncated = len(text) // 4 > max_tokens
        if truncated:
            text = text[: max_tokens * 4]
        usage = (
            step.usage
            or self.usage
            or Usage(input_tokens=prompt_chars // 4, output_tokens=max(1, len(text) // 4))
        )
        return text, usage, truncated


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


# --- Anthropic: https://docs.anthropic.com/en/api/messages ------------------------------

_ANTHROPIC_FAULTS = {
    FaultKind.RATE_LIMIT: _Err(
        429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
    ),
    FaultKind.SPEND_LIMIT: _Err(
        429, "rate_limit_error", "This request would exceed your organization's spend limit"
    ),
    FaultKind.OVERLOADED: _Err(529, "overloaded_error", "Overloaded"),
    FaultKind.SERVER_ERROR: _Err(500, "api_error", "Internal server error"),
    FaultKind.CONTEXT_TOO_LONG: _Err(
        400, "invalid_request_error", "prompt is too long: 215883 tokens > 200000 maximum"
    ),
    FaultKind.AUTH: _Err(401, "authentication_error", "invalid x-api-key"),
}


class _Block(BaseModel):
    type: str
    text: str = ""


class _AnthropicMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str | list[_Block]


class _MessagesBody(BaseModel):
    model: str
    max_tokens: int = Field(ge=0)
    messages: list[_AnthropicMessage] = Field(min_length=1)
    system: str | list[_Block] | None = None
    stream: bool = False


def _chars(content: str | list[_Block] | None) -> int:
    if content is None or isinstance(content, str):
        return len(content or "")
    return sum(len(block.text) for block in content)


@dataclass(slots=True, kw_only=True)
class AnthropicStandIn(_StandIn):
    """POST /v1/messages, authenticated by `x-api-key` or `Authorization: Bearer`."""

    request_id_header = "request-id"
    faults = _ANTHROPIC_FAULTS

    def __post_init__(self) -> None:
        self._new_app("Anthropic stand-in", {"/v1/messages": self._messages})

    def _error_body(self, err: _Err, rid: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": err.type, "message": err.message}, "request_id": rid}

    def _check_headers(self, request: Request) -> _Err | None:
        key = request.headers.get("x-api-key") or _bearer(request)
        if not key:
            return _Err(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return _Err(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _Err(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    async def _messages(self, request: Request) -> Response:
        rid = self._rid()
        parsed = await self._parse(request, rid, _MessagesBody)
        if isinstance(parsed, Response):
            return parsed
        payload, body = parsed
        if request.headers["anthropic-version"] >= _NO_SAMPLING_VERSION:
            for name in ("temperature", "top_p", "top_k"):
                if name in payload:
                    message = f"{name}: Extra inputs are not permitted"
                    return self._error(_Err(400, "invalid_request_error", message), rid)
        if body.stream:
            return self._error(_Err(400, "invalid_request_error", "stand-in: no streaming"), rid)
        step = await self._step(request, rid, payload)
        if isinstance(step, Response):
            return step
        chars = _chars(body.system) + sum(_chars(m.content) for m in body.messages)
        text, usage, truncated = self._reply(step, chars, body.max_tokens)
        return self._json(
            {
                "id": f"msg_standin{next(self._ids):012d}",
                "type": "message",
                "role": "assistant",
                "model": body.model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if truncated else "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "cache_creation_input_tokens": usage.cache_write_tokens,
                    "cache_read_input_tokens": usage.cache_read_tokens,
                },
            },
            rid,
        )


# --- OpenAI: https://platform.openai.com/docs/api-reference -----------------------------

_OPENAI_FAULTS = {
    FaultKind.RATE_LIMIT: _Err(
        429, "requests", "Rate limit reached for requests per min (RPM)", "rate_limit_exceeded"
    ),
    FaultKind.SPEND_LIMIT: _Err(
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
    ),
    FaultKind.OVERLOADED: _Err(503, "server_error", "The server is overloaded or not ready yet."),
    FaultKind.SERVER_ERROR: _Err(500, "server_error", "The server had an error processing it."),
    FaultKind.CONTEXT_TOO_LONG: _Err(
        400,
        "invalid_request_error",
        "This model's maximum context length is 128000 tokens.",
        "context_length_exceeded",
    ),
    FaultKind.AUTH: _Err(401, "invalid_request_error", "Incorrect API key provided.", "invalid_api_key"),
}


class _OpenAIMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None


class _JsonSchemaFormat(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class _ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchemaFormat | None = None


class _ChatBody(BaseModel):
    model: str
    messages: list[_OpenAIMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    response_format: _ResponseFormat | None = None
    stream: bool = False

    def format_error(self) -> str | None:
        """OpenAI's 400s for a response_format it cannot use."""
        rf = self.response_format
        if rf is None:
            return None
        if rf.type == "json_schema" and rf.json_schema is None:
            return "Missing required parameter: 'response_format.json_schema'."
        texts = (m.content for m in self.messages if isinstance(m.content, str))
        if rf.type == "json_object" and not any("json" in text.lower() for text in texts):
            return ("'messages' must contain the word 'json' in some form, to use 'response_format' of type"
                    " 'json_object'.")  # fmt: skip
        return None


class _EmbeddingsBody(BaseModel):
    model: str
    input: str | list[str]
    dimensions: int = Field(default=1536, ge=1, le=3072)
    encoding_format: Literal["float"] = "float"


@dataclass(slots=True, kw_only=True)
class OpenAIStandIn(_StandIn):
    """Chat completions, embeddings and audio transcriptions under `base_path`: /v1 as OpenAI,
    /openai/v1 as Groq, /v1beta/openai as Gemini, /api/v1 as OpenRouter. `response_format`
    is checked as OpenAI checks it; the reply text is the script's, whatever the schema."""

    transcript_text: str = "Olá, gostaria de saber o horário de atendimento."
    transcript_seconds: float | None = None
    base_path: str = "/v1"

    request_id_header = "x-request-id"
    faults = _OPENAI_FAULTS

    def __post_init__(self) -> None:
        self._new_app(
            "OpenAI stand-in",
            {
                f"{self.base_path}/chat/completions": self._chat,
                f"{self.base_path}/embeddings": self._embeddings,
                f"{self.base_path}/audio/transcriptions": self._transcriptions,
            },
        )

    def _error_body(self, err: _Err, rid: str) -> dict[str, Any]:
        return {"error": {"message": err.message, "type": err.type, "param": None, "code": err.code}}

    def _check_headers(self, request: Request) -> _Err | None:
        key = _bearer(request)
        if not key:
            return _Err(401, "invalid_request_error", "You didn't provide an API key.")
        if self.api_key is not None and key != self.api_key:
            return self.faults[FaultKind.AUTH]
        return None

    async def _chat(self, request: Request) -> Response:
        rid = self._rid()
        parsed = await self._parse(request, rid, _ChatBody)
        if isinstance(parsed, Response):
            return parsed
        payload, body = parsed
        if body.stream:
            return self._error(_Err(400, "invalid_request_error", "stand-in: no streaming"), rid)
        if (problem := body.format_error()) is not None:
            return self._error(_Err(400, "invalid_request_error", problem), rid)
        step = await self._step(request, rid, payload)
        if isinstance(step, Response):
            return step
        chars = sum(len(m.content) for m in body.messages if isinstance(m.content, str))
        limit = body.max_completion_tokens or body.max_tokens or 4096
        text, usage, truncated = self._reply(step, chars, limit)
        prompt = usage.input_tokens + usage.cache_read_tokens  # OpenAI counts cached inside
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": "length" if truncated else "stop",
        }
        return self._json(
            {
                "id": f"chatcmpl-standin{next(self._ids):012d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.model,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": prompt + usage.output_tokens,
                    "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
                },
                "system_fingerprint": "fp_standin",
            },
            rid,
        )

    async def _embeddings(self, request: Request) -> Response:
        rid = self._rid()
        parsed = await self._parse(request, rid, _EmbeddingsBody)
        if isinstance(parsed, Response):
            return parsed
        payload, body = parsed
        step = await self._step(request, rid, payload)
        if isinstance(step, Response):
            return step
        texts = [body.input] if isinstance(body.input, str) else body.input
        tokens = sum(max(1, len(t) // 4) for t in texts)
        data = [
            {"object": "embedding", "index": i, "embedding": HashingEmbedder().vector(t, body.dimensions)}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return self._json({"object": "list", "data": data, "model": body.model, "usage": usage}, rid)

    async def _transcriptions(self, request: Request) -> Response:
        rid = self._rid()
        if (denied := self._check_headers(request)) is not None:
            return self._error(denied, rid)
        async with request.form() as form:
            upload, model = form.get("file"), form.get("model")
            if not isinstance(upload, UploadFile) or not isinstance(model, str):
                message = "Missing required parameters: 'file' and 'model'."
                return self._error(_Err(400, "invalid_request_error", message), rid)
            audio = await upload.read()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        record = {
            **fields,
            "filename": upload.filename,
            "content_type": upload.content_type,
            "bytes": len(audio),
        }
        step = await self._step(request, rid, record)
        if isinstance(step, Response):
            return step
        text = step.text or self.transcript_text
        # ~4 kB/s is the bitrate of a WhatsApp Opus voice note.
        seconds = self.transcript_seconds or round(len(audio) / 4000, 2)
        if fields.get("response_format") != "verbose_json":
            return self._json({"text": text}, rid)
        segment = {"id": 0, "start": 0.0, "end": seconds, "text": text}
        verbose = {
            "task": "transcribe",
            "language": "portuguese",
            "duration": seconds,
            "text": text,
            "segments": [segment],
        }
        return self._json(verbose, rid)


def anthropic_app() -> FastAPI:
    """Factory for `uvicorn --factory`: a fresh Anthropic stand-in with defaults."""
    return AnthropicStandIn().app


def openai_app() -> FastAPI:
    """Factory for `uvicorn --factory`: a fresh OpenAI stand-in with defaults."""
    return OpenAIStandIn().app
