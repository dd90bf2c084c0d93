"""Stream wrappers shared by the instrumentors: one span per streamed call, ended exactly once.

``SyncStreamProxy`` and ``AsyncStreamProxy`` are transparent proxies (``wrapt.ObjectProxy``) of
the SDK's ``Stream`` / ``AsyncStream``: attribute access, ``isinstance``, ``response``, the context
manager and iteration all behave as the SDK's object does. Each item goes to a ``StreamHandler``
that collects what the stream says (ids, finish reasons, usage, time to first chunk). The span
ends -- exactly once -- at the first of:

- the end of the stream (status unset);
- an exception from the stream (status ERROR, ``error.type``; the exception is re-raised);
- ``close()``, leaving the ``with`` block, or a ``for`` loop broken out of (the loop's iterator
  is closed when the loop drops it; for ``async for`` when the event loop finalizes it);
- the proxy being garbage-collected unconsumed (its ``__del__``, which keeps no reference to
  the proxy, so nothing is resurrected; ``weakref.finalize`` did the same for ~2 µs a stream).

A stream that ends early reports whatever usage it carried so far.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Protocol

import wrapt

from otel_llm.lifecycle import CallSpan

_logger = logging.getLogger(__name__)


class StreamHandler(Protocol):
    """Reads a stream's items; the instrumentor of each SDK has one per API."""

    def on_item(self, call: CallSpan, item: Any) -> None:
        """One item of the stream; calls ``call.first_chunk()`` when it carries content."""

    def complete(self, call: CallSpan) -> None:
        """Set what the items said on the span, just before it ends."""


class StreamState:
    """A streamed call in progress: the span and its handler, without the stream itself."""

    def __init__(self, call: CallSpan, handler: StreamHandler):
        self.call = call
        self.handler = handler

    @property
    def alive(self) -> bool:
        """The span is still to be ended (by the stream's end, its closing or its collection)."""
        return not self.call.ended

    def on_item(self, item: Any) -> None:
        call = self.call
        if call.ended:
            return
        try:
            self.handler.on_item(call, item)
        except Exception:
            _logger.debug("otel-llm: could not read a stream item", exc_info=True)

    def finish(self) -> None:
        call = self.call
        if not call.ended:
            call.end(before=lambda: self.handler.complete(call))

    def fail(self, exc: BaseException) -> None:
        if not self.call.ended:
            self.call.fail(exc)
        self.finish()


class _StreamProxy(wrapt.ObjectProxy[Any]):
    """What both proxies do: hold the state, and finish it once, when done or failed."""

    def __init__(self, wrapped: Any, state: StreamState):
        super().__init__(wrapped)
        self._self_state = state

    def __del__(self) -> None:
        # Collected before its stream was done with (a no-op when it was). Only the state is
        # touched: the proxy itself is not stored anywhere, so it is not resurrected.
        self._self_state.finish()  # CallSpan.end raises nothing

    @property
    def otel_llm_state(self) -> StreamState:
        return self._self_state

    @property
    def _self_finalizer(self) -> StreamState:
        """What ends the span if nothing else does (``alive`` until the span has ended)."""
        return self._self_state

    def _self_done(self) -> None:
        self._self_state.finish()

    def _self_ended_by(self, exc: BaseException, stop: type[BaseException]) -> None:
        """The stream ended by ``exc``: done when it is ``stop`` (the end of iteration, or the
        iterator closed), failed otherwise."""
        if isinstance(exc, stop):
            self._self_state.finish()
        else:
            self._self_state.fail(exc)


class SyncStreamProxy(_StreamProxy):
    """The SDK's ``Stream``, seen through: its span ends when the stream is done with."""

    def __iter__(self) -> Iterator[Any]:
        # StreamState.on_item inlined: one call a chunk into the handler, not two.
        call = self._self_state.call
        on_item = self._self_state.handler.on_item
        try:
            for item in self.__wrapped__:
                if not call.ended:
                    try:
                        on_item(call, item)
                    except Exception:
                        _logger.debug("otel-llm: could not read a stream item", exc_info=True)
                yield item
        except BaseException as exc:
            self._self_ended_by(exc, GeneratorExit)
            raise
        self._self_done()

    def __next__(self) -> Any:
        try:
            item = self.__wrapped__.__next__()
        except BaseException as exc:
            self._self_ended_by(exc, StopIteration)
            raise
        self._self_state.on_item(item)
        return item

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_done()

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_done()


class AsyncStreamProxy(_StreamProxy):
    """The SDK's ``AsyncStream``, seen through: its span ends when the stream is done with."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        # StreamState.on_item inlined: one call a chunk into the handler, not two.
        call = self._self_state.call
        on_item = self._self_state.handler.on_item
        try:
            async for item in self.__wrapped__:
                if not call.ended:
                    try:
                        on_item(call, item)
                    except Exception:
                        _logger.debug("otel-llm: could not read a stream item", exc_info=True)
                yield item
        except BaseException as exc:
            self._self_ended_by(exc, GeneratorExit)
            raise
        self._self_done()

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except BaseException as exc:
            self._self_ended_by(exc, StopAsyncIteration)
            raise
        self._self_state.on_item(item)
        return item

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_done()

    async def aclose(self) -> None:
        # OpenAI's alias of close (found in review: passed through, it left the span open till
        # the proxy was collected). A stream without one raises as it would, the span open.
        aclose = self.__wrapped__.aclose
        try:
            await aclose()
        finally:
            self._self_done()

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_done()


def end_stream_of(helper: Any) -> None:
    """End the span of the raw stream a stream helper reads (``ChatCompletionStream``,
    ``ResponseStream``, ...), whose ``close()`` closes the HTTP response, not the raw stream."""
    state = getattr(getattr(helper, "_raw_stream", None), "otel_llm_state", None)
    if isinstance(state, StreamState):
        state.finish()
