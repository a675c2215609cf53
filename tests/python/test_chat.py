"""Non-streaming chat completions through every provider kind."""

from __future__ import annotations

import base64

import pytest

from support import CHAT_KINDS, MOCK_CHAT_KINDS

# A 1x1 transparent PNG.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()


@pytest.mark.parametrize("kind", CHAT_KINDS, ids=str)
def test_chat_answers_with_content_finish_reason_and_usage(client, kind):
    raw = client.chat.completions.with_raw_response.create(
        model=kind.alias,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello from python"},
        ],
    )
    assert raw.status_code == 200
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-tollgate-provider") == kind.kind
    assert raw.headers.get("x-tollgate-deployment") == kind.deployment

    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id
    assert completion.model
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == kind.expected_text("hello from python")
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_client_request_id_is_echoed(client):
    raw = client.chat.completions.with_raw_response.create(
        model="echo",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "pytest-req-42"},
    )
    assert raw.headers.get("x-request-id") == "pytest-req-42"


@pytest.mark.parametrize("kind", CHAT_KINDS, ids=str)
def test_max_tokens_cuts_the_answer_with_finish_reason_length(client, kind):
    completion = client.chat.completions.create(
        model=kind.alias,
        messages=[{"role": "user", "content": "one two three four five six seven"}],
        max_tokens=2,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content
    assert len(choice.message.content.split()) <= 2


@pytest.mark.parametrize("kind", MOCK_CHAT_KINDS, ids=str)
def test_an_image_part_reaches_the_upstream(client, kind):
    completion = client.chat.completions.create(
        model=kind.alias,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this picture?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    content = completion.choices[0].message.content
    assert "[1 image(s)]" in content, content
    assert "what is in this picture?" in content


@pytest.mark.parametrize("kind", CHAT_KINDS, ids=str)
def test_response_format_json_object_is_accepted(client, kind):
    completion = client.chat.completions.create(
        model=kind.alias,
        messages=[{"role": "user", "content": "answer in json please"}],
        response_format={"type": "json_object"},
    )
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
