"""Errors as the SDK sees them: the right exception class, status, message and headers.

Upstream faults come from the mock's knob suffix on the model name (see support.py); no error
may ever show the provider key the gateway holds.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from support import (
    ADMIN_KEY,
    FALLBACK,
    FALLBACK_SECOND,
    FAULT_400,
    FAULT_429,
    FAULT_500,
    FAULT_DISCONNECT,
    FAULT_GARBAGE,
    FAULT_HANG,
    MAX_BODY_BYTES,
    NOKEY,
    RETRY_AFTER_SECONDS,
    UNSET_KEY_VAR,
    assert_no_secret,
    error_texts,
)

HELLO = [{"role": "user", "content": "hello there general kenobi"}]


def _chat_error(client, model, exc_type=openai.APIStatusError, **kwargs):
    """Calls chat, expects exc_type, checks the key did not leak, returns the exception."""
    with pytest.raises(exc_type) as e:
        client.chat.completions.create(model=model, messages=HELLO, **kwargs)
    assert_no_secret(*error_texts(e.value))
    return e.value


def _assert_openai_error_shape(exc: openai.APIStatusError) -> None:
    body = exc.body
    assert isinstance(body, dict), body
    assert isinstance(body.get("message"), str) and body["message"]
    assert isinstance(body.get("type"), str)
    assert isinstance(body.get("code"), str)
    assert exc.response.headers.get("x-request-id")


# === the client's fault ===


def test_wrong_key_is_401(gateway_url):
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="not-the-key", max_retries=0) as c:
        e = _chat_error(c, "echo", openai.AuthenticationError)
    assert e.status_code == 401
    _assert_openai_error_shape(e)
    assert "not-the-key" not in str(e)


def test_unknown_model_is_404_naming_the_model(client):
    e = _chat_error(client, "gpt-does-not-exist", openai.NotFoundError)
    assert e.status_code == 404
    assert "gpt-does-not-exist" in e.message
    _assert_openai_error_shape(e)


def test_an_invalid_field_is_400_naming_the_field(client):
    e = _chat_error(client, "echo", openai.BadRequestError, temperature=5)
    assert e.status_code == 400
    assert "temperature" in e.message
    assert e.body.get("param") == "temperature"
    _assert_openai_error_shape(e)


def test_an_invalid_role_is_400_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=[{"role": "wizard", "content": "x"}])
    assert "messages[0]" in e.value.message


def test_embeddings_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="embed-does-not-exist", input="x")
    assert "embed-does-not-exist" in e.value.message


# === upstream faults ===


def test_upstream_429_is_a_rate_limit_error_with_retry_after(client):
    e = _chat_error(client, FAULT_429, openai.RateLimitError)
    assert e.status_code == 429
    assert e.response.headers.get("retry-after") == str(RETRY_AFTER_SECONDS)
    _assert_openai_error_shape(e)


def test_upstream_400_is_passed_on_as_400(client):
    e = _chat_error(client, FAULT_400, openai.BadRequestError)
    assert e.status_code == 400
    _assert_openai_error_shape(e)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_500_is_502(client, stream):
    e = _chat_error(client, FAULT_500, openai.InternalServerError, stream=stream)
    assert e.status_code == 502
    _assert_openai_error_shape(e)


def test_upstream_garbage_is_502(client):
    e = _chat_error(client, FAULT_GARBAGE, openai.InternalServerError)
    assert e.status_code == 502
    _assert_openai_error_shape(e)


def test_upstream_garbage_while_streaming_is_an_error_not_a_hang(client):
    # Either the gateway notices before answering (502) or ends the stream with an error event.
    with pytest.raises(openai.APIError) as e:
        for _ in client.chat.completions.create(model=FAULT_GARBAGE, messages=HELLO, stream=True):
            pass
    assert not isinstance(e.value, openai.APIConnectionError), repr(e.value)
    if isinstance(e.value, openai.APIStatusError):
        assert e.value.status_code == 502
    assert_no_secret(*error_texts(e.value))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_hang_times_out_with_504(client, stream):
    started = time.monotonic()
    e = _chat_error(client, FAULT_HANG, openai.InternalServerError, stream=stream)
    elapsed = time.monotonic() - started
    assert e.status_code == 504
    _assert_openai_error_shape(e)
    assert 0.8 < elapsed < 10, f"the 1s first-byte timeout took {elapsed:.1f}s"


def test_a_mid_stream_disconnect_raises_while_iterating(client):
    stream = client.chat.completions.create(model=FAULT_DISCONNECT, messages=HELLO, stream=True)
    received = []
    started = time.monotonic()
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            received.append(chunk)
    assert time.monotonic() - started < 10
    # The gateway ends the stream with an error event: an APIError with a body, not a broken
    # connection.
    assert not isinstance(e.value, openai.APIConnectionError), repr(e.value)
    assert isinstance(e.value.body, dict) and e.value.body.get("message"), e.value.body
    assert received, "the chunks before the disconnect were delivered"
    assert_no_secret(*error_texts(e.value))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fallback_serves_from_the_second_deployment(client, stream):
    raw = client.chat.completions.with_raw_response.create(model=FALLBACK, messages=HELLO, stream=stream)
    assert raw.status_code == 200
    assert raw.headers.get("x-tollgate-deployment") == FALLBACK_SECOND
    assert raw.headers.get("x-tollgate-provider") == "openai_compatible"
    parsed = raw.parse()
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    else:
        text = parsed.choices[0].message.content
    assert text == "mock: hello there general kenobi"


def test_a_provider_without_its_key_is_503_naming_the_variable(client):
    e = _chat_error(client, NOKEY, openai.InternalServerError)
    assert e.status_code == 503
    assert UNSET_KEY_VAR in e.message
    _assert_openai_error_shape(e)


@pytest.mark.parametrize(
    "model", [FAULT_429, FAULT_400, FAULT_500, FAULT_GARBAGE, FAULT_HANG, NOKEY, "no-such-model"]
)
def test_no_error_shows_the_provider_key(http, model):
    r = http.post("/v1/chat/completions", json={"model": model, "messages": HELLO})
    assert r.status_code >= 400
    assert_no_secret(r.text, dict(r.headers))


# === HTTP-level checks the SDK would hide ===


def test_a_body_over_the_limit_is_413(http):
    big = "x" * (MAX_BODY_BYTES + 1024)
    r = http.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": big}]})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    assert str(MAX_BODY_BYTES) in r.json()["error"]["message"]


def test_a_chunked_body_over_the_limit_is_413(http):
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "y" * (2 * MAX_BODY_BYTES)}]})

    def chunks():  # no Content-Length: the limit must hold while reading
        data = body.encode()
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    r = http.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text


def test_the_sdk_sees_413_too(client):
    e = _chat_error(
        client, "echo", openai.APIStatusError, extra_body={"metadata": {"pad": "z" * (MAX_BODY_BYTES + 10)}}
    )
    assert e.status_code == 413


def test_a_non_json_content_type_is_415(http):
    r = http.post(
        "/v1/chat/completions",
        content=json.dumps({"model": "echo", "messages": HELLO}),
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"


def test_invalid_json_is_400(http):
    r = http.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_a_missing_key_is_401(gateway_url):
    r = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": "echo", "messages": HELLO},
        trust_env=False,
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_healthz_needs_no_key(gateway_url):
    r = httpx.get(f"{gateway_url}/healthz", trust_env=False)
    assert r.status_code == 200


def test_the_admin_key_is_not_echoed(http):
    r = http.post("/v1/chat/completions", json={"model": "nope", "messages": HELLO})
    assert ADMIN_KEY not in r.text
