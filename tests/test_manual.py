"""llm_call: conformant spans for any provider, as context manager and decorator."""

from __future__ import annotations

import asyncio
import itertools
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

from otel_llm import _semconv as sc
from otel_llm import current_llm_call, llm_call
from tests.support.pipeline import Pipeline


class ProviderError(Exception):
    pass


class RateLimited(ProviderError):
    status_code = 429


def test_span_shape(pipeline: Pipeline) -> None:
    with llm_call(
        provider="ollama",
        model="llama3.1:8b",
        server_address="127.0.0.1",
        server_port=11434,
        attributes={"gen_ai.request.temperature": 0.2},
        tracer_provider=pipeline.provider,
    ) as call:
        call.set_usage(input_tokens=30, output_tokens=12)
        call.set_response(model="llama3.1:8b", id="r-1", finish_reasons=["stop"])
    (span,) = pipeline.spans()
    assert span.name == "chat llama3.1:8b"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = span.attributes
    assert attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[sc.GEN_AI_PROVIDER_NAME] == "ollama"
    assert attributes[sc.SERVER_PORT] == 11434
    assert attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes["gen_ai.request.temperature"] == 0.2
    # Ollama is not in the price data: explicitly unpriced, not free.
    assert attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "unknown_provider"


def test_exception_marks_the_span_and_is_reraised_unchanged(pipeline: Pipeline) -> None:
    error = ProviderError("429 Too Many Requests")
    with pytest.raises(ProviderError) as raised:
        with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider):
            raise error
    assert raised.value is error
    (span,) = pipeline.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "tests.test_manual.ProviderError"
    assert span.events[0].name == "exception"


def test_an_error_with_an_http_status_is_marked_as_the_instrumentors_mark_it(
    pipeline: Pipeline,
) -> None:
    with pytest.raises(RateLimited):
        with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider):
            raise RateLimited("429 Too Many Requests")
    (span,) = pipeline.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "tests.test_manual.RateLimited"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 429


def test_decorator_sync_and_async(pipeline: Pipeline) -> None:
    @llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider)
    def ask(question: str) -> str:
        call = current_llm_call()
        assert call is not None
        call.set_usage(input_tokens=len(question), output_tokens=3)
        return "yes"

    @llm_call(
        provider="anthropic",
        model="claude-sonnet-4-5",
        operation="chat",
        tracer_provider=pipeline.provider,
    )
    async def ask_async() -> str:
        call = current_llm_call()
        assert call is not None
        call.first_chunk()
        call.set_usage(input_tokens=5, output_tokens=5)
        return "ok"

    assert ask("why?") == "yes"
    assert asyncio.run(ask_async()) == "ok"
    assert current_llm_call() is None
    names = [s.name for s in pipeline.spans()]
    assert names == ["chat gpt-4o-mini", "chat claude-sonnet-4-5"]
    streamed = pipeline.spans()[1]
    assert streamed.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert streamed.attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0


def test_concurrent_invocations_of_one_decorated_function(pipeline: Pipeline) -> None:
    barrier = threading.Barrier(4)

    @llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider)
    def work(index: int) -> None:
        barrier.wait(5)
        call = current_llm_call()
        assert call is not None
        call.set_usage(input_tokens=index + 1, output_tokens=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    spans = pipeline.spans()
    assert sorted(s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] for s in spans) == [1, 2, 3, 4]
    assert len({s.context.span_id for s in spans}) == 4


def test_one_instance_entered_by_threads_and_tasks_at_once_keeps_each_ones_span(
    pipeline: Pipeline,
) -> None:
    """Found in review: one stack per instance -- the first block to leave ended the other's
    span and both raised on the other's context token."""
    shared = llm_call(provider="openai", model="gpt-4o-mini", tracer_provider=pipeline.provider)
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def in_thread(tokens: int) -> None:
        try:
            with shared as call:
                barrier.wait(5)  # both blocks open at once
                if tokens == 2:
                    barrier.wait(5)  # the other has left by now
                call.set_usage(input_tokens=tokens, output_tokens=1)
                if tokens == 1:
                    barrier.wait(5)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    async def in_task(tokens: int, both_open: asyncio.Event, first_left: asyncio.Event) -> None:
        async with shared as call:
            if tokens == 20:
                both_open.set()
                await first_left.wait()
            else:
                await both_open.wait()
            call.set_usage(input_tokens=tokens, output_tokens=1)
        if tokens == 10:
            first_left.set()
        assert current_llm_call() is None

    async def tasks() -> None:
        both_open, first_left = asyncio.Event(), asyncio.Event()
        await asyncio.gather(in_task(10, both_open, first_left), in_task(20, both_open, first_left))

    threads = [threading.Thread(target=in_thread, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    asyncio.run(tasks())
    assert failures == []
    spans = pipeline.spans()
    assert sorted(s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] for s in spans) == [1, 2, 10, 20]
    assert len({s.context.span_id for s in spans}) == 4
    assert current_llm_call() is None


def test_a_decorated_generator_is_one_span_open_while_it_is_iterated(pipeline: Pipeline) -> None:
    """Found in review: the span ended as the generator was made, before its body ran, and
    ``current_llm_call()`` was None inside it."""
    seen_between: list[object] = []

    class Streamer:
        @llm_call(provider="ollama", model="llama3.1:8b", tracer_provider=pipeline.provider)
        def stream(self, words: list[str]) -> Any:
            call = current_llm_call()
            assert call is not None
            call.first_chunk()
            for word in words:
                reply = yield word
                if reply == "stop":
                    break
            call.set_usage(input_tokens=3, output_tokens=len(words))
            return "done"

    streamer = Streamer()
    made = streamer.stream(["a", "b"])
    assert pipeline.spans() == ()  # nothing ran yet
    items = []
    for item in made:
        seen_between.append(current_llm_call())  # the consumer's own context between steps
        items.append(item)
        assert pipeline.spans() == ()  # open while iterated
    assert items == ["a", "b"]
    assert seen_between == [None, None]
    (span,) = pipeline.spans()
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert span.status.status_code is StatusCode.UNSET

    def outer() -> Any:
        return (yield from streamer.stream(["x", "y", "z"]))

    driven = outer()
    assert next(driven) == "x"
    with pytest.raises(StopIteration) as stopped:
        driven.send("stop")  # a value sent reaches the body
    assert stopped.value.value == "done"  # and its return value comes back
    early = streamer.stream(["p", "q"])
    assert next(early) == "p"
    early.close()  # closed early: ended, not failed
    failing = streamer.stream(["boom"])
    next(failing)
    with pytest.raises(KeyError):
        failing.throw(KeyError("thrown in"))  # an exception thrown in reaches the body
    spans = pipeline.spans()
    assert len(spans) == 4
    assert [s.status.status_code for s in spans[1:]] == [
        StatusCode.UNSET,
        StatusCode.UNSET,
        StatusCode.ERROR,
    ]
    assert spans[3].attributes[sc.ERROR_TYPE] == "KeyError"


def test_a_decorated_async_generator_is_one_span_open_while_it_is_iterated(
    pipeline: Pipeline,
) -> None:
    @llm_call(provider="ollama", model="llama3.1:8b", tracer_provider=pipeline.provider)
    async def stream(words: list[str]) -> Any:
        call = current_llm_call()
        assert call is not None
        for word in words:
            await asyncio.sleep(0)
            yield word
        call.set_usage(input_tokens=3, output_tokens=len(words))

    async def main() -> list[str]:
        items = [item async for item in stream(["a", "b", "c"])]
        assert current_llm_call() is None
        early = stream(["p", "q"])
        assert await early.__anext__() == "p"
        await early.aclose()
        return items

    assert asyncio.run(main()) == ["a", "b", "c"]
    first, second = pipeline.spans()
    assert first.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert second.status.status_code is StatusCode.UNSET
    assert sc.GEN_AI_USAGE_OUTPUT_TOKENS not in second.attributes


def test_children_nest_under_the_call(pipeline: Pipeline) -> None:
    tracer = pipeline.provider.get_tracer("http")
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider):
        with tracer.start_as_current_span("POST /v1/chat/completions"):
            pass
    child, parent = pipeline.spans()
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id


def test_bad_values_do_not_raise(pipeline: Pipeline) -> None:
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider) as call:
        call.set_usage(input_tokens="many", output_tokens=-3)  # type: ignore[arg-type]
        call.set_attribute("gen_ai.request.seed", object())
        call.usage_missing()
    (span,) = pipeline.spans()
    assert span.attributes[sc.OTEL_LLM_COST_UNPRICED_REASON] == "invalid_usage"


def test_a_string_of_finish_reasons_is_one_reason(pipeline: Pipeline) -> None:
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider) as call:
        call.set_response(finish_reasons="stop")  # type: ignore[arg-type]
    (span,) = pipeline.spans()
    # It was recorded as ("s", "t", "o", "p").
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)


def test_finish_reasons_keep_the_strings_of_any_iterable_and_ignore_the_rest(
    pipeline: Pipeline,
) -> None:
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider) as call:
        call.set_response(finish_reasons=(r for r in ["stop", 3, "length"]))  # type: ignore[misc]
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider) as call:
        call.set_response(finish_reasons=17)  # type: ignore[arg-type]  # was a TypeError
    with llm_call(provider="openai", model="gpt-4o", tracer_provider=pipeline.provider) as call:
        call.set_response(finish_reasons=itertools.count())  # type: ignore[arg-type]  # endless
    first, second, third = pipeline.spans()
    assert first.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in second.attributes
    assert sc.GEN_AI_RESPONSE_FINISH_REASONS not in third.attributes


def test_arguments_of_the_wrong_type_are_ignored_and_the_rest_recorded(
    pipeline: Pipeline,
) -> None:
    with llm_call(
        provider="openai",
        model=b"gpt-4o",  # type: ignore[arg-type]
        stream="yes",  # type: ignore[arg-type]
        server_address="api.openai.com",
        server_port=70_000,
        attributes={"gen_ai.request.seed": 7, 3: "x", "gen_ai.request.top_k": {"k": 1}},
        tracer_provider=pipeline.provider,
    ) as call:
        call.set_usage(input_tokens=10, output_tokens=5)
        call.set_cost(Decimal("0.0125"))
        call.set_attribute("gen_ai.request.max_tokens", 2**70)  # no OTLP int holds it
        call.set_response(id=42, model="gpt-4o-2024-08-06")  # type: ignore[arg-type]
    (span,) = pipeline.spans()
    assert span.name == "chat"  # {operation} without a model
    attributes = span.attributes
    assert sc.GEN_AI_REQUEST_MODEL not in attributes
    assert sc.GEN_AI_REQUEST_STREAM not in attributes
    assert sc.SERVER_PORT not in attributes
    assert attributes[sc.SERVER_ADDRESS] == "api.openai.com"
    assert attributes["gen_ai.request.seed"] == 7
    assert "gen_ai.request.top_k" not in attributes
    assert "gen_ai.request.max_tokens" not in attributes
    assert sc.GEN_AI_RESPONSE_ID not in attributes
    assert attributes[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert attributes[sc.GEN_AI_USAGE_COST_AMOUNT] == 0.0125
    assert attributes[sc.GEN_AI_USAGE_COST_SOURCE] == sc.COST_SOURCE_PROVIDER


class Hostile:
    """A value whose protocols raise (all but repr, hash and equality, which hypothesis needs
    to report it): the app may pass anything."""

    def __init__(self, *_: object) -> None:
        pass

    def __repr__(self) -> str:
        return "Hostile()"

    def _fail(self, *_: object) -> Any:
        raise RuntimeError("hostile value")

    __str__ = __format__ = __bool__ = __iter__ = __len__ = __float__ = __int__ = _fail
    __index__ = __lt__ = __getitem__ = __call__ = __round__ = __abs__ = _fail


class HostileStr(str):
    """A str whose own methods raise, as a str subclass can."""

    __str__ = __format__ = __iter__ = __len__ = __getitem__ = Hostile._fail


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.decimals(allow_nan=True),
    st.fractions(),
    st.complex_numbers(),
    st.builds(Hostile),
    st.builds(HostileStr, st.text(max_size=5)),
    st.just(object()),
    st.just(itertools.count()),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.tuples(_SCALARS, _SCALARS),
    st.frozensets(st.integers(), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), _SCALARS, max_size=3),
    st.iterables(_SCALARS, max_size=3),
)
_START_ARGS = ("provider", "model", "operation", "stream", "server_address", "server_port")
_USAGE_ARGS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
)


@st.composite
def manual_calls(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, tuple[Any, ...]]]]:
    """Arguments of ``llm_call`` and a sequence of handle methods with arguments, all random."""
    start = {name: draw(_VALUES) for name in _START_ARGS if draw(st.booleans())}
    start.setdefault("provider", draw(_VALUES))
    start.setdefault("model", draw(_VALUES))
    if draw(st.booleans()):
        start["attributes"] = draw(_VALUES)
    steps: list[tuple[str, tuple[Any, ...]]] = []
    for method in draw(st.lists(st.sampled_from(sorted(_METHODS)), max_size=6)):
        steps.append((method, draw(_METHODS[method])))
    return start, steps


def _kwargs(names: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.fixed_dictionaries({}, optional={name: _VALUES for name in names}).map(
        lambda kwargs: (kwargs,)
    )


_METHODS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "set_usage": _kwargs(_USAGE_ARGS),
    "set_response": _kwargs(("model", "id", "finish_reasons")),
    "set_cost": st.tuples(_VALUES),
    "set_attribute": st.tuples(st.one_of(st.text(max_size=10), _VALUES), _VALUES),
    "first_chunk": st.just(()),
    "usage_missing": st.just(()),
}


@settings(
    max_examples=5_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(call=manual_calls())
def test_the_manual_api_never_raises_whatever_it_is_given(
    pipeline: Pipeline, call: tuple[dict[str, Any], list[tuple[str, tuple[Any, ...]]]]
) -> None:
    start, steps = call
    pipeline.exporter.clear()
    with llm_call(**start, tracer_provider=pipeline.provider) as handle:
        for method, arguments in steps:
            if arguments and isinstance(arguments[0], dict) and method in _KWARG_METHODS:
                getattr(handle, method)(**arguments[0])
            else:
                getattr(handle, method)(*arguments)
    (span,) = pipeline.spans()  # started and ended, once
    assert isinstance(span.name, str)
    assert handle.ended


_KWARG_METHODS = {"set_usage", "set_response"}
