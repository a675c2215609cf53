"""Streaming chat completions (SSE) through every provider kind."""

from __future__ import annotations

import pytest

from support import CHAT_KINDS

PROMPT = "stream these words to me please"


def _collect(stream):
    """Returns (chunks, reassembled text, finish reasons seen)."""
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return chunks, text, finishes


@pytest.mark.parametrize("kind", CHAT_KINDS, ids=str)
def test_stream_reassembles_the_text(client, kind):
    raw = client.chat.completions.with_raw_response.create(
        model=kind.alias,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
    )
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    assert raw.headers.get("x-tollgate-provider") == kind.kind
    assert raw.headers.get("x-tollgate-deployment") == kind.deployment
    assert raw.headers.get("x-request-id")
    chunks, text, finishes = _collect(raw.parse())

    assert len(chunks) > 1, "the answer should arrive in several chunks"
    assert text == kind.expected_text(PROMPT)
    assert finishes == ["stop"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "every chunk of one completion shares its id"
    assert all(c.usage is None for c in chunks), "no usage chunk unless include_usage is set"


@pytest.mark.parametrize("kind", CHAT_KINDS, ids=str)
def test_stream_include_usage_ends_with_a_usage_chunk(client, kind):
    stream = client.chat.completions.create(
        model=kind.alias,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, text, finishes = _collect(stream)
    assert text == kind.expected_text(PROMPT)
    assert finishes == ["stop"]

    last = chunks[-1]
    assert last.choices == [], "the usage chunk has no choices"
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert [c for c in chunks if c.usage is not None] == [last], "exactly one usage chunk, last"


@pytest.mark.parametrize("kind", CHAT_KINDS, ids=str)
def test_stream_max_tokens_finishes_with_length(client, kind):
    stream = client.chat.completions.create(
        model=kind.alias,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=2,
        stream=True,
    )
    _, text, finishes = _collect(stream)
    assert finishes == ["length"]
    assert 0 < len(text.split()) <= 2
