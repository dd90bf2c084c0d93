"""A fake OpenAI + Anthropic HTTP server for tests that drive the real SDK clients.

It is a real HTTP/1.1 server on 127.0.0.1 (ephemeral port, ``ThreadingHTTPServer`` in a thread)
speaking the wire formats the ``openai`` and ``anthropic`` SDKs parse: JSON bodies, SSE streams
(chunked transfer encoding, so an abrupt close is seen by the client as a truncated body), the
providers' error JSON bodies and request-id headers.

    from tests.support.fake_llm import FakeLLMServer, ScriptedResponse

    with FakeLLMServer() as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
        server.script(
            ScriptedResponse(model="gpt-4o-mini-2024-07-18", text="Hi there", chunks=2,
                             input_tokens=12, output_tokens=3, cached_tokens=4),
        )
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        request = server.last_request  # RecordedRequest(method, path, query, headers, body)
        assert request.path == "/v1/chat/completions"

        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test")  # /v1/messages

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/embeddings``
(OpenAI) and ``POST /v1/messages``, ``POST /v1/messages/count_tokens`` (Anthropic). Each
endpoint streams (SSE) when the JSON body has ``"stream": true``. Chat-completions streams end
with a usage chunk (empty ``choices``) only when ``stream_options.include_usage`` is true.

Scripting: every request pops the next ``ScriptedResponse`` from one FIFO queue
(``server.script(r1, r2, ...)``), whatever the endpoint; when the queue is empty
``server.default`` (a plain ``ScriptedResponse()``, settable) answers. A retried request (SDK
retries on 429/5xx/connection errors) takes the next entry, so ``script(rate_limited, ok)``
tests a retry. ``ScriptedResponse`` fields:

* ``text``, ``chunks`` (number of text deltas in a stream), ``model`` (response model; ``None``
  echoes the request's ``model``), ``finish_reason`` (``None``: ``"stop"`` / ``"end_turn"``).
* Token counts, as the provider puts them on the wire: ``input_tokens`` (OpenAI
  ``prompt_tokens``/``input_tokens``, which *include* cached tokens; Anthropic
  ``input_tokens``, which *exclude* cache reads and writes), ``output_tokens`` (OpenAI includes
  reasoning tokens), ``cached_tokens`` (OpenAI ``*_tokens_details.cached_tokens``; Anthropic
  ``cache_read_input_tokens``), ``cache_creation_tokens`` (Anthropic
  ``cache_creation_input_tokens``; OpenAI ``cache_write_tokens``), ``reasoning_tokens`` (OpenAI
  ``reasoning_tokens``; Anthropic ``output_tokens_details.thinking_tokens`` when > 0).
  Anthropic streams put ``output_tokens=1`` on ``message_start`` and the cumulative totals on
  ``message_delta``, as the real API does.
* ``first_chunk_delay_ms``: a stream sends its headers at once, then waits this long before the
  first SSE event; a non-stream response waits this long before answering.
  ``chunk_delay_ms``: the pause between text deltas.
* ``status`` (e.g. 429, 500, 529): answer with that status and the provider's error body
  (OpenAI ``{"error": {"message", "type", "param", "code"}}``; Anthropic
  ``{"type": "error", "error": {"type", "message"}, "request_id"}``); override with
  ``error_message`` / ``error_type`` / ``error_code``. Error responses carry ``retry-after: 0``
  and ``retry-after-ms: 1`` (both SDKs ignore a 0 ``retry-after`` and back off ~0.5 s, so the
  ms header is what makes retries immediate; set ``retry_after_ms=None`` to omit it). Pass
  ``max_retries=0`` to the client to see the error at once.
* ``fail_after_chunks=N``: a stream sends N text deltas, then fails. ``failure="error_event"``
  (default) sends the provider's in-stream error and ends the stream: OpenAI chat
  ``data: {"error": {...}}`` (the SDK raises ``openai.APIError``); Responses API ``event: error``
  then ``event: response.failed`` (the SDK *yields* these, it does not raise); Anthropic
  ``event: error`` with ``{"type": "error", "error": {"type": "overloaded_error", ...}}`` (the
  SDK raises ``anthropic.APIStatusError``). ``failure="disconnect"`` closes the connection
  mid-body (openai raises ``APIConnectionError``; this anthropic version lets
  ``httpx2.RemoteProtocolError`` out of a stream, ``APIConnectionError`` elsewhere). On a
  non-stream request, ``fail_after_chunks`` (any value) sends half the JSON body and disconnects
  (the SDKs raise ``APIConnectionError``, after retrying unless ``max_retries=0``).
* ``headers``: extra response headers; ``embedding_dimensions`` (default 8; the request's
  ``dimensions`` wins).
* ``tool_calls``: ``ToolCall(name, arguments)`` the model asks for (non-streamed OpenAI
  responses only: a stream asked for with them fails the request with a 400, so a test never
  reads a stream silently without them). Chat completions: ``message.tool_calls`` and finish
  reason ``tool_calls``, the message's ``content`` is ``null`` when ``text`` is empty. Responses
  API: one ``function_call`` output item each, after the message item (left out when ``text``
  is empty). Agent frameworks (the OpenAI Agents SDK, LangChain) run the tool, then call again.

Other attributes: ``server.port``, ``server.base_url``, ``server.pending`` (scripted responses
not yet taken).

Stream shapes. Chat completions (also what ``client.chat.completions.stream(...)`` reads; that
helper does not add ``stream_options``): a role chunk (``content: ""``), one chunk per text
delta, a chunk with ``finish_reason`` and an empty delta, the usage chunk if asked for, then
``data: [DONE]``. Responses API: ``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``, ``response.output_text.delta``
(one per chunk), ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``, ``response.completed`` (usage only on the last). Anthropic:
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta`` (one per chunk),
``content_block_stop``, ``message_delta``, ``message_stop``.

Recording: ``server.requests`` (a copy of the list, oldest first), ``server.last_request``,
``server.requests_to("/v1/messages")``, ``server.clear()`` (forgets requests and the queue).
Each ``RecordedRequest`` has ``method``, ``path`` (no query), ``query``, ``headers`` (dict,
lower-case names), ``body`` (parsed JSON, or ``None``) and ``raw_body``, e.g.
``server.last_request.body["stream_options"] == {"include_usage": True}``.

``server.close()`` (or leaving the ``with`` block) stops the listener, cuts open connections
and joins every thread the server started.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from tests.support.servers import HOST, Background, HTTPServer, HTTPServerThread

Failure = Literal["error_event", "disconnect"]

_OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings")
_ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")

# Real error bodies, by status: (type, code, message) for OpenAI, (type, message) for Anthropic.
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: test."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 0s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "Not found."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass(frozen=True)
class ToolCall:
    """A function call the scripted model asks for; ``arguments`` is the JSON text."""

    name: str
    arguments: str = "{}"
    call_id: str | None = None
    """``None``: ``call_<n>`` numbered per response."""


@dataclass
class ScriptedResponse:
    """What the server answers to one request; see the module docstring for each field."""

    text: str = "Hello from the fake LLM."
    model: str | None = None
    chunks: int = 3
    finish_reason: str | None = None
    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    first_chunk_delay_ms: float = 0
    chunk_delay_ms: float = 0
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry_after_ms: int | None = 1
    fail_after_chunks: int | None = None
    failure: Failure = "error_event"
    headers: dict[str, str] = field(default_factory=dict)
    embedding_dimensions: int = 8
    tool_calls: tuple[ToolCall, ...] = ()

    def call_ids(self, number: int) -> list[str]:
        """The ids of ``tool_calls`` in the ``number``-th response."""
        return [
            call.call_id or f"call_fake{number:06d}_{index}"
            for index, call in enumerate(self.tool_calls)
        ]

    def text_chunks(self) -> list[str]:
        """``text`` split into ``chunks`` non-empty pieces (fewer if the text is shorter)."""
        if not self.text:
            return []
        count = max(1, min(self.chunks, len(self.text)))
        size, extra = divmod(len(self.text), count)
        pieces, start = [], 0
        for index in range(count):
            end = start + size + (1 if index < extra else 0)
            pieces.append(self.text[start:end])
            start = end
        return pieces


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes


class _Disconnect(Exception):
    """Raised inside the handler to cut the connection mid-response."""


class FakeLLMServer(Background):
    """The fake provider server, serving from the moment it is made; use as a context manager
    (or call ``close()``)."""

    def __init__(self) -> None:
        self.default = ScriptedResponse()
        self._lock = threading.Lock()
        self._queue: deque[ScriptedResponse] = deque()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._http = HTTPServerThread(_Handler, self, name="fake-llm-server")
        self.port: int = self._http.port

    # -- addresses -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def script_environment(self) -> dict[str, str]:
        """The variables a script in another process reaches this server with: its base URLs
        (``FAKE_OPENAI_BASE_URL``, ``FAKE_ANTHROPIC_BASE_URL``), test keys, no proxy, and no
        telemetry of the Anthropic SDK's own."""
        return {
            "FAKE_OPENAI_BASE_URL": self.openai_base_url,
            "FAKE_ANTHROPIC_BASE_URL": self.anthropic_base_url,
            "ANTHROPIC_OPEN_TELEMETRY": "false",
            "OPENAI_API_KEY": "test",
            "ANTHROPIC_API_KEY": "test",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # -- scripting and recording -----------------------------------------------------------------

    def script(self, *responses: ScriptedResponse) -> None:
        """Queue responses; each request takes the next one, then ``default`` answers."""
        with self._lock:
            self._queue.extend(responses)

    @property
    def pending(self) -> int:
        """How many scripted responses no request has taken yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise AssertionError("the fake LLM server has received no request")
            return self._requests[-1]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    def _take(self, request: RecordedRequest) -> tuple[ScriptedResponse, int]:
        with self._lock:
            self._requests.append(request)
            scripted = self._queue.popleft() if self._queue else self.default
            return scripted, next(self._ids)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Already serving (since it was made): here for ``with``."""
        return self

    def stop(self) -> None:
        """Stops serving; a scripted delay or stream under way is cut short."""
        self._http.stop()

    close = stop


# -- the request handler ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HTTPServer
    # A buffered writer: a JSON response's headers and body leave in one send (at the flush),
    # as a real server's would; streams flush after every event.
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ---- plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            raw_body=raw,
        )
        fake: FakeLLMServer = self.server.owner
        scripted, number = fake._take(request)
        self._stopping = self.server.stopping
        provider = "anthropic" if url.path.startswith("/v1/messages") else "openai"
        self._request_id = f"req_{uuid.uuid4().hex[:24]}"
        try:
            if url.path not in _OPENAI_PATHS + _ANTHROPIC_PATHS or self.command != "POST":
                self._send_error(provider, 404, ScriptedResponse(error_message="Unknown path."))
            elif scripted.status >= 400:
                self._send_error(provider, scripted.status, scripted)
            elif scripted.tool_calls and isinstance(body, dict) and body.get("stream"):
                message = "the fake scripts tool calls on non-streamed responses only"
                self._send_error(provider, 400, ScriptedResponse(error_message=message))
            else:
                body = body if isinstance(body, dict) else {}
                _ROUTES[url.path](self, body, scripted, number)
        except _Disconnect:
            self._cut()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def _sleep(self, milliseconds: float) -> None:
        if milliseconds > 0 and self._stopping.wait(milliseconds / 1000):
            raise _Disconnect

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _id_headers(self, provider: str) -> dict[str, str]:
        if provider == "anthropic":
            return {"request-id": self._request_id}
        return {"x-request-id": self._request_id, "openai-processing-ms": "1"}

    def _send_json(
        self,
        provider: str,
        payload: Any,
        scripted: ScriptedResponse,
        *,
        status: int = 200,
        extra: dict[str, str] | None = None,
    ) -> None:
        if status == 200:
            self._sleep(scripted.first_chunk_delay_ms)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in {
            **self._id_headers(provider),
            **(extra or {}),
            **scripted.headers,
        }.items():
            self.send_header(name, value)
        self.end_headers()
        if status == 200 and scripted.fail_after_chunks is not None:
            self.wfile.write(data[: len(data) // 2])
            raise _Disconnect
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, provider: str, status: int, scripted: ScriptedResponse) -> None:
        payload: dict[str, Any]
        if provider == "anthropic":
            kind, message = _ANTHROPIC_ERRORS.get(
                status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
            )
            payload = {
                "type": "error",
                "error": {
                    "type": scripted.error_type or kind,
                    "message": scripted.error_message or message,
                },
                "request_id": self._request_id,
            }
        else:
            kind, code, message = _OPENAI_ERRORS.get(
                status,
                ("server_error" if status >= 500 else "invalid_request_error", None, "Error."),
            )
            payload = {
                "error": {
                    "message": scripted.error_message or message,
                    "type": scripted.error_type or kind,
                    "param": None,
                    "code": scripted.error_code or code,
                }
            }
        extra = {"retry-after": "0"}
        if scripted.retry_after_ms is not None:
            extra["retry-after-ms"] = str(scripted.retry_after_ms)
        self._send_json(provider, payload, scripted, status=status, extra=extra)

    def _start_stream(self, provider: str, scripted: ScriptedResponse) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        for name, value in {**self._id_headers(provider), **scripted.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        self._sleep(scripted.first_chunk_delay_ms)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sse(self, data: Any, event: str | None = None) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        line = f"event: {event}\ndata: {text}\n\n" if event else f"data: {text}\n\n"
        self._write_chunk(line.encode())

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _deltas(self, scripted: ScriptedResponse) -> Iterator[tuple[int, str]]:
        """The text deltas to send, pausing between them; stops at ``fail_after_chunks``."""
        pieces = scripted.text_chunks()
        if scripted.fail_after_chunks is not None:
            pieces = pieces[: scripted.fail_after_chunks]
        for index, piece in enumerate(pieces):
            if index:
                self._sleep(scripted.chunk_delay_ms)
            yield index, piece

    # ---- OpenAI chat completions

    def _chat(self, body: dict[str, Any], scripted: ScriptedResponse, number: int) -> None:
        model = scripted.model or str(body.get("model", "gpt-4o-mini"))
        ident = f"chatcmpl-fake{number:06d}"
        created = int(time.time())
        finish = scripted.finish_reason or "stop"
        usage = _openai_chat_usage(scripted)
        if not body.get("stream"):
            payload = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": _chat_message(scripted, number),
                        "logprobs": None,
                        "finish_reason": "tool_calls" if scripted.tool_calls else finish,
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            }
            self._send_json("openai", payload, scripted)
            return

        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(choices: list[dict[str, Any]], chunk_usage: Any = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage:
                data["usage"] = chunk_usage
            return data

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        self._start_stream("openai", scripted)
        self._sse(chunk([choice({"role": "assistant", "content": "", "refusal": None})]))
        for _, piece in self._deltas(scripted):
            self._sse(chunk([choice({"content": piece})]))
        if scripted.fail_after_chunks is not None:
            self._fail_openai_chat(scripted)
            return
        self._sse(chunk([choice({}, finish)]))
        if include_usage:
            self._sse(chunk([], usage))
        self._sse("[DONE]")
        self._end_stream()

    def _fail_openai_chat(self, scripted: ScriptedResponse) -> None:
        if scripted.failure == "disconnect":
            raise _Disconnect
        message = scripted.error_message or _OPENAI_ERRORS[500][2]
        error = {
            "message": message,
            "type": scripted.error_type or "server_error",
            "param": None,
            "code": scripted.error_code,
        }
        self._sse({"error": error})
        self._end_stream()

    # ---- OpenAI Responses API

    def _responses(self, body: dict[str, Any], scripted: ScriptedResponse, number: int) -> None:
        model = scripted.model or str(body.get("model", "gpt-4o-mini"))
        ident = f"resp_fake{number:06d}"
        item_id = f"msg_fake{number:06d}"
        created = int(time.time())

        def message(text: str, status: str) -> dict[str, Any]:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            return {
                "id": item_id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [part] if status == "completed" else [],
            }

        def response(status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default",
                "store": True,
                "temperature": 1.0,
                "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": "auto",
                "tools": [],
                "top_p": 1.0,
                "truncation": "disabled",
                "usage": usage,
                "user": None,
                "metadata": {},
            }

        usage = _openai_responses_usage(scripted)
        if not body.get("stream"):
            # A reply that only calls tools has no message item.
            keep = scripted.text or not scripted.tool_calls
            output = [message(scripted.text, "completed")] if keep else []
            for call, call_id in zip(scripted.tool_calls, scripted.call_ids(number), strict=True):
                output.append(
                    {
                        "id": f"fc_{call_id}",
                        "type": "function_call",
                        "status": "completed",
                        "call_id": call_id,
                        "name": call.name,
                        "arguments": call.arguments,
                    }
                )
            payload = response("completed", output, usage)
            payload["completed_at"] = created
            self._send_json("openai", payload, scripted)
            return

        sequence = itertools.count()

        def event(kind: str, **fields: Any) -> None:
            self._sse({"type": kind, "sequence_number": next(sequence), **fields}, event=kind)

        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        self._start_stream("openai", scripted)
        event("response.created", response=response("in_progress", []))
        event("response.in_progress", response=response("in_progress", []))
        event("response.output_item.added", output_index=0, item=message("", "in_progress"))
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        event("response.content_part.added", **where, part=empty_part)
        sent = ""
        for _, piece in self._deltas(scripted):
            event("response.output_text.delta", **where, delta=piece, logprobs=[])
            sent += piece
        if scripted.fail_after_chunks is not None:
            if scripted.failure == "disconnect":
                raise _Disconnect
            code = scripted.error_code or "server_error"
            text = scripted.error_message or _OPENAI_ERRORS[500][2]
            event("error", code=code, message=text, param=None)
            failed = response("failed", [], None)
            failed["error"] = {"code": code, "message": text}
            event("response.failed", response=failed)
            self._end_stream()
            return
        event("response.output_text.done", **where, text=sent, logprobs=[])
        done_part = {"type": "output_text", "text": sent, "annotations": [], "logprobs": []}
        event("response.content_part.done", **where, part=done_part)
        final_item = message(sent, "completed")
        event("response.output_item.done", output_index=0, item=final_item)
        completed = response("completed", [final_item], usage)
        completed["completed_at"] = int(time.time())
        event("response.completed", response=completed)
        self._end_stream()

    # ---- OpenAI embeddings

    def _embeddings(self, body: dict[str, Any], scripted: ScriptedResponse, number: int) -> None:
        del number
        model = scripted.model or str(body.get("model", "text-embedding-3-small"))
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) and inputs and not _is_tokens(inputs) else 1
        dimensions = int(body.get("dimensions") or scripted.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index in range(count):
            vector = [
                round((index + 1) * 0.01 + position * 0.001, 6) for position in range(dimensions)
            ]
            embedding: Any = vector
            if as_base64:
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {
                "prompt_tokens": scripted.input_tokens,
                "total_tokens": scripted.input_tokens,
            },
        }
        self._send_json("openai", payload, scripted)

    # ---- Anthropic messages

    def _messages(self, body: dict[str, Any], scripted: ScriptedResponse, number: int) -> None:
        model = scripted.model or str(body.get("model", "claude-haiku-4-5"))
        ident = f"msg_fake{number:06d}"
        stop_reason = scripted.finish_reason or "end_turn"
        usage = _anthropic_usage(scripted, scripted.output_tokens)
        if not body.get("stream"):
            payload = {
                "id": ident,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": scripted.text}],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
            self._send_json("anthropic", payload, scripted)
            return

        self._start_stream("anthropic", scripted)
        start_message = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(scripted, min(1, scripted.output_tokens)),
        }
        self._sse({"type": "message_start", "message": start_message}, event="message_start")
        block = {"type": "text", "text": ""}
        start_block = {"type": "content_block_start", "index": 0, "content_block": block}
        self._sse(start_block, event="content_block_start")
        self._sse({"type": "ping"}, event="ping")
        for _, piece in self._deltas(scripted):
            delta = {"type": "text_delta", "text": piece}
            self._sse(
                {"type": "content_block_delta", "index": 0, "delta": delta},
                event="content_block_delta",
            )
        if scripted.fail_after_chunks is not None:
            if scripted.failure == "disconnect":
                raise _Disconnect
            error = {
                "type": scripted.error_type or "overloaded_error",
                "message": scripted.error_message or "Overloaded",
            }
            self._sse({"type": "error", "error": error}, event="error")
            self._end_stream()
            return
        self._sse({"type": "content_block_stop", "index": 0}, event="content_block_stop")
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": _anthropic_delta_usage(scripted),
        }
        self._sse(message_delta, event="message_delta")
        self._sse({"type": "message_stop"}, event="message_stop")
        self._end_stream()

    def _count_tokens(self, body: dict[str, Any], scripted: ScriptedResponse, number: int) -> None:
        del body, number
        self._send_json("anthropic", {"input_tokens": scripted.input_tokens}, scripted)


def _chat_message(scripted: ScriptedResponse, number: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": scripted.text if scripted.text or not scripted.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if scripted.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call, call_id in zip(scripted.tool_calls, scripted.call_ids(number), strict=True)
        ]
    return message


def _is_tokens(inputs: list[Any]) -> bool:
    """A single pre-tokenized input is a list of ints."""
    return all(isinstance(item, int) for item in inputs)


def _openai_chat_usage(scripted: ScriptedResponse) -> dict[str, Any]:
    return {
        "prompt_tokens": scripted.input_tokens,
        "completion_tokens": scripted.output_tokens,
        "total_tokens": scripted.input_tokens + scripted.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": scripted.cached_tokens,
            "cache_write_tokens": scripted.cache_creation_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": scripted.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_responses_usage(scripted: ScriptedResponse) -> dict[str, Any]:
    return {
        "input_tokens": scripted.input_tokens,
        "input_tokens_details": {
            "cached_tokens": scripted.cached_tokens,
            "cache_write_tokens": scripted.cache_creation_tokens,
        },
        "output_tokens": scripted.output_tokens,
        "output_tokens_details": {"reasoning_tokens": scripted.reasoning_tokens},
        "total_tokens": scripted.input_tokens + scripted.output_tokens,
    }


def _anthropic_usage(scripted: ScriptedResponse, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": scripted.input_tokens,
        "cache_creation_input_tokens": scripted.cache_creation_tokens,
        "cache_read_input_tokens": scripted.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": scripted.cache_creation_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    if scripted.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": scripted.reasoning_tokens}
    return usage


def _anthropic_delta_usage(scripted: ScriptedResponse) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": scripted.input_tokens,
        "cache_creation_input_tokens": scripted.cache_creation_tokens,
        "cache_read_input_tokens": scripted.cached_tokens,
        "output_tokens": scripted.output_tokens,
    }
    if scripted.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": scripted.reasoning_tokens}
    return usage


_ROUTES = {
    "/v1/chat/completions": _Handler._chat,
    "/v1/responses": _Handler._responses,
    "/v1/embeddings": _Handler._embeddings,
    "/v1/messages": _Handler._messages,
    "/v1/messages/count_tokens": _Handler._count_tokens,
}
