"""``otel-llm demo --serve``'s traffic: a month of the scenario's calls, as applications' spans.

The calls are ``scenario.plan``'s -- one plan a day, so every day has the same mix of models,
streams, cache reads and reasoning, and its call of the unknown-price model -- each given a time
in the last 30 days (fewer at night and at weekends, a month of growth, one afternoon when
OpenAI rate-limits), a service and an API key of that service, and the latency a real call of
its size takes. Each day some of them become a conversation (turns sharing
``gen_ai.conversation.id``, with their prompts) and an agent run: a request's root span, an
``invoke_agent`` span, calls and a tool in one trace.

``month`` decides all that from ``calls``, ``seed`` and the current time; ``Sender`` writes it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from otel_llm.demo.scenario import FEATURES, OPENAI, UNKNOWN_MODEL, SimulatedCall, plan

DAYS = 30
DAY_NS = 86_400 * 10**9
_S = 10**9

_WEEKEND = 0.45
"""A weekend day's share of a weekday's traffic."""
_GROWTH = (0.7, 1.2)
"""Traffic 30 days ago and today, relative: the product is growing."""
_KEPT_FAILURES = 0.25
"""Of the plan's failures (10 %), those kept: a few percent a day, as in production."""
_INCIDENT_DAY = 7
"""Days ago of the afternoon OpenAI rate-limits (14:00-16:00 UTC): most of its calls fail."""
_INCIDENT_HOURS = range(14, 16)
_INCIDENT_FAILURES = 0.6
_LAST_CALL_AGO = 5 * 60 * _S
"""Today's calls start this long before now at the latest (a call lasts under a minute)."""
_ROOM = 30 * 60 * _S
"""Room a conversation or an agent run needs before the day's end (minutes between turns)."""


@dataclass(frozen=True, slots=True)
class Service:
    """An application sending its spans: its ``service.name`` and the API keys it calls with
    (``llm_context(api_key_id=...)``)."""

    name: str
    api_keys: tuple[str, ...]


CHAT = Service("chat-api", ("key-web-prod", "key-mobile-prod"))
DOCS = Service("docs-worker", ("key-batch",))
INGEST = Service("ingest-pipeline", ("key-batch", "key-etl"))
SUPPORT = Service("support-agent", ("key-support",))
SERVICES = (CHAT, DOCS, INGEST, SUPPORT)
_SERVICE_OF: dict[str, Service] = {
    "chat": CHAT,
    "summarize": DOCS,
    "classify": INGEST,
    "extract": INGEST,
}
assert set(_SERVICE_OF) == set(FEATURES)

AGENT = "support-triage"
AGENT_ID = "agt-support-triage-v2"
TOOL = "search_tickets"
ROUTE = "/v1/support/answer"

_QUESTIONS = (
    "How do I rotate my API key?",
    "Why was my card charged twice this month?",
    "Can I export my data as CSV?",
    "The dashboard shows no data since yesterday, what happened?",
    "How do I add a teammate to my workspace?",
)
_ANSWERS = (
    "Go to Settings > API keys, create a new key, then revoke the old one.",
    "The second charge is a pending authorisation; it disappears within 3 days.",
    "Yes: open the table, then Export > CSV.",
    "An ingestion delay on our side was fixed at 09:40 UTC; data is back-filled.",
    "Open Workspace > Members and invite them by e-mail.",
)


@dataclass(frozen=True, slots=True)
class TimedCall:
    """A planned call at its time: when it starts, how long it takes, who makes it."""

    call: SimulatedCall
    start_ns: int
    duration_ns: int
    first_chunk_ns: int | None
    """Streams: nanoseconds from the start to the first chunk."""
    api_key: str
    conversation: str | None = None
    prompt: str | None = None
    """The user's message, captured (with its answer) for conversations and agent runs."""
    answer: str | None = None

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns


@dataclass(frozen=True, slots=True)
class Trace:
    """One trace: a call on its own, or an agent run (a root span, the agent, its calls with
    the tool between the first two)."""

    service: Service
    calls: tuple[TimedCall, ...]
    agent_run: bool = False
    tool_ns: tuple[int, int] = (0, 0)
    """An agent run's tool span: start and end."""

    @property
    def start_ns(self) -> int:
        return self.calls[0].start_ns - (_S // 20 if self.agent_run else 0)

    @property
    def end_ns(self) -> int:
        return self.calls[-1].end_ns + (_S // 50 if self.agent_run else 0)


@dataclass
class Month:
    """What ``month`` planned; ``traces`` in time order."""

    traces: list[Trace] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(len(trace.calls) for trace in self.traces)


def month(calls: int, seed: int, now_ns: int) -> Month:
    """About ``calls`` calls over the last ``DAYS`` days up to ``now_ns``: a function of its
    arguments only."""
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not cryptography
    today = now_ns // DAY_NS * DAY_NS
    starts = [today - (DAYS - 1 - i) * DAY_NS for i in range(DAYS)]
    elapsed_today = max(0.05, (now_ns - today) / DAY_NS)
    weights = []
    for i, start in enumerate(starts):
        weekday = datetime.fromtimestamp(start / _S, UTC).weekday()
        weight = (_WEEKEND if weekday >= 5 else 1.0) * rng.uniform(0.85, 1.15)
        weight *= _GROWTH[0] + (_GROWTH[1] - _GROWTH[0]) * i / (DAYS - 1)
        weights.append(weight * (elapsed_today if i == DAYS - 1 else 1.0))
    total = sum(weights)
    result = Month()
    for i, start in enumerate(starts):
        count = max(1, round(calls * weights[i] / total))
        # Today's calls start minutes ago at the latest: none ends in the future.
        day = _Day(rng, start, min(start + DAY_NS, now_ns - _LAST_CALL_AGO), DAYS - 1 - i)
        result.traces += day.traces(plan(count, seed * 1009 + i))
    result.traces.sort(key=lambda trace: trace.start_ns)
    return result


class _Day:
    def __init__(self, rng: random.Random, start_ns: int, end_ns: int, days_ago: int):
        self.rng = rng
        self.start_ns = start_ns
        self.end_ns = max(end_ns, start_ns + _S)
        self.days_ago = days_ago

    def traces(self, planned: list[SimulatedCall]) -> list[Trace]:
        rng = self.rng
        timed = [self._failing(call, self._when()) for call in planned]
        traces: list[Trace] = []
        # One agent run a day, from three of the day's good calls (the unknown model's aside).
        good = [
            i
            for i, (call, _) in enumerate(timed)
            if not call.fails and call.model is not UNKNOWN_MODEL
        ]
        if len(good) >= 3 and self.end_ns - self.start_ns > _ROOM:
            taken = set(good[:3])
            traces.append(self._agent_run([timed[i][0] for i in sorted(taken)]))
            timed = [item for i, item in enumerate(timed) if i not in taken]
        # One conversation a day: a few chat calls, made one user's turns minutes apart.
        chats = [i for i, (call, _) in enumerate(timed) if call.feature == "chat"]
        if len(chats) >= 2 and self.end_ns - self.start_ns > _ROOM:
            taken = set(chats[: rng.randint(2, 5)])
            traces += self._conversation([timed[i][0] for i in sorted(taken)])
            timed = [item for i, item in enumerate(timed) if i not in taken]
        for call, at in timed:
            service = _SERVICE_OF[call.feature]
            traces.append(Trace(service, (self._timed(call, at, rng.choice(service.api_keys)),)))
        return traces

    def _when(self, room: int = 0) -> int:
        """A time of the day, busier in the afternoon (UTC) than at night, ``room``
        nanoseconds before its end at least."""
        rng, end = self.rng, max(self.start_ns + 1, self.end_ns - room)
        for _ in range(20):
            hour = rng.choices(range(24), weights=_HOURLY)[0]
            at = self.start_ns + hour * 3600 * _S + rng.randrange(3600 * _S)
            if at < end:
                return at
        return rng.randrange(self.start_ns, end)

    def _failing(self, call: SimulatedCall, at: int) -> tuple[SimulatedCall, int]:
        hour = (at - self.start_ns) // (3600 * _S)
        if (
            self.days_ago == _INCIDENT_DAY
            and hour in _INCIDENT_HOURS
            and call.model.provider is OPENAI
            and call.model is not UNKNOWN_MODEL
        ):
            return replace(call, fails=self.rng.random() < _INCIDENT_FAILURES), at
        if call.fails and self.rng.random() >= _KEPT_FAILURES:
            return replace(call, fails=False), at
        return call, at

    def _timed(
        self,
        call: SimulatedCall,
        at: int,
        api_key: str,
        conversation: str | None = None,
        turn: int | None = None,
    ) -> TimedCall:
        rng, model = self.rng, call.model
        if call.fails:  # refused before any token: a short round trip
            return TimedCall(
                call, at, int(rng.uniform(0.05, 0.4) * _S), None, api_key, conversation
            )
        # Prefill grows with the prompt; then the output streams at the model's pace.
        first = model.first_token_s * rng.lognormvariate(0, 0.35) + call.input_tokens / 40_000
        rest = call.output_tokens / (model.tokens_per_s * rng.uniform(0.75, 1.25))
        prompt = answer = None
        if turn is not None:
            prompt, answer = _QUESTIONS[turn % len(_QUESTIONS)], _ANSWERS[turn % len(_ANSWERS)]
        return TimedCall(
            call,
            at,
            int((first + rest) * _S),
            int(first * _S) if call.stream else None,
            api_key,
            conversation,
            prompt,
            answer,
        )

    def _conversation(self, calls: list[SimulatedCall]) -> list[Trace]:
        rng = self.rng
        conversation = f"conv-{rng.getrandbits(48):012x}"
        user, key = calls[0].user_id, rng.choice(CHAT.api_keys)
        at = self._when(_ROOM)
        first = rng.randrange(len(_QUESTIONS))
        traces = []
        for turn, call in enumerate(calls):
            timed = self._timed(replace(call, user_id=user), at, key, conversation, first + turn)
            traces.append(Trace(CHAT, (timed,)))
            at = timed.end_ns + int(rng.uniform(20, 180) * _S)  # the user reads, then types
        return traces

    def _agent_run(self, calls: list[SimulatedCall]) -> Trace:
        rng = self.rng
        conversation = f"conv-{rng.getrandbits(48):012x}"
        topic = rng.randrange(len(_QUESTIONS))
        key = SUPPORT.api_keys[0]
        at = self._when(_ROOM)
        timed: list[TimedCall] = []
        tool = (0, 0)
        for step, planned in enumerate(calls):
            call = replace(planned, feature="support", project_id="proj-support")
            one = self._timed(call, at, key, conversation, topic if step == 0 else None)
            timed.append(one)
            at = one.end_ns + int(rng.uniform(0.005, 0.03) * _S)
            if step == 0:  # the agent looks the tickets up before it answers
                tool = (at, at + int(rng.uniform(0.2, 1.5) * _S))
                at = tool[1] + int(0.005 * _S)
        return Trace(SUPPORT, tuple(timed), agent_run=True, tool_ns=tool)


# Requests per hour of the day (UTC), relative: Europe's afternoon and America's morning.
_HOURLY = (
    0.25, 0.2, 0.18, 0.18, 0.2, 0.3, 0.45, 0.65, 0.85, 1.0, 1.05, 1.1,
    1.1, 1.2, 1.3, 1.35, 1.3, 1.15, 0.95, 0.8, 0.65, 0.5, 0.4, 0.3,
)  # fmt: skip


def messages(role: str, text: str) -> str:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` of one text message."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])
