"""The legacy text completions API (POST /v1/completions) on the openai_compatible alias."""

from __future__ import annotations

PROMPT = "complete this sentence"


def test_completion(client):
    raw = client.completions.with_raw_response.create(model="compat-chat", prompt=PROMPT, max_tokens=50)
    assert raw.headers.get("x-tollgate-provider") == "openai_compatible"
    assert raw.headers.get("x-tollgate-deployment") == "compat/mock-model"
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert len(completion.choices) == 1
    assert completion.choices[0].text == f"mock: {PROMPT}"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_completion_stream(client):
    stream = client.completions.create(model="compat-chat", prompt=PROMPT, max_tokens=50, stream=True)
    chunks = list(stream)
    assert len(chunks) > 1
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == f"mock: {PROMPT}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
