"""The response cache as the official OpenAI SDK sees it (docs/caching.md).

One gateway of its own (`start_tenant_gateway`): a SQLite store, the bootstrap tenant's key, the
mock upstream's model `m` priced at $1 per token, and `cache: {mode: on}` so every request of
the tenant is looked up and stored unless its headers say otherwise.
"""

from __future__ import annotations

import time

import openai
import pytest

from support import tenant_gateway_config
from test_limits import nanodollars, usage_report


@pytest.fixture(scope="module")
def cache_gw(start_tenant_gateway, mock_addr):
    config = tenant_gateway_config(mock_addr)
    config["cache"] = {"mode": "on", "ttl": "10m"}
    gw = start_tenant_gateway("cache", config)
    yield gw
    gw.stop()


def ask(client: openai.OpenAI, text: str, **kwargs):
    """A raw-response chat call to `fast`: (x-tollgate-cache, parsed completion or stream)."""
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": text}], **kwargs
    )
    return raw.headers.get("x-tollgate-cache"), raw.parse()


def settle():
    """Answers are stored off the request path, just after the response."""
    time.sleep(0.2)


def test_cache_json_answer_is_replayed_to_the_sdk(cache_gw):
    with cache_gw.client() as client:
        status, first = ask(client, "what is a haiku?")
        assert status == "miss"
        settle()
        status, again = ask(client, "what is a haiku?")
        assert status == "hit"
        assert again.id == first.id
        assert again.choices[0].message.content == first.choices[0].message.content
        assert again.usage.total_tokens == first.usage.total_tokens > 0


def test_cache_stream_is_replayed_as_sse_with_usage_only_when_asked(cache_gw):
    with cache_gw.client() as client:
        status, stream = ask(client, "count to five", stream=True)
        assert status == "miss"
        live = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert live
        settle()
        status, stream = ask(client, "count to five", stream=True)
        assert status == "hit"
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == live
        assert all(c.usage is None for c in chunks), "usage chunk sent to a client that did not ask"
        assert chunks[-1].choices[0].finish_reason == "stop"

        status, stream = ask(client, "count to five", stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert status == "hit"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
        # The same answer for a client that does not stream.
        status, completion = ask(client, "count to five")
        assert (status, completion.choices[0].message.content) == ("hit", live)


def test_cache_headers_turn_it_off_and_bad_ones_are_400(cache_gw):
    with cache_gw.client() as client:
        status, _ = ask(client, "never stored", extra_headers={"x-tollgate-cache": "off"})
        assert status == "bypass"
        settle()
        status, _ = ask(client, "never stored", extra_headers={"Cache-Control": "no-store"})
        assert status == "miss", "the `off` request stored its answer"
        with pytest.raises(openai.BadRequestError) as e:
            ask(client, "bad header", extra_headers={"x-tollgate-cache": "sometimes"})
        assert e.value.status_code == 400
        assert "x-tollgate-cache" in e.value.message


def test_cache_usage_report_counts_hits_and_the_cost_saved(start_tenant_gateway, mock_addr):
    config = tenant_gateway_config(mock_addr)
    config["cache"] = {"mode": "on"}
    gw = start_tenant_gateway("cache-usage", config)
    try:
        with gw.client() as client:
            _, first = ask(client, "price me")
            settle()
            for _ in range(3):
                assert ask(client, "price me")[0] == "hit"
        report = usage_report(gw, 4)["totals"]
        # $1 per token: the miss cost its tokens; the three hits cost nothing and saved as much each.
        tokens = first.usage.prompt_tokens + first.usage.completion_tokens
        assert nanodollars(report["cost_usd"]) == tokens * 10**9
        assert (report["cache_hits"], report["cache_misses"]) == (3, 1)
        assert nanodollars(report["cost_saved_usd"]) == 3 * tokens * 10**9
    finally:
        gw.stop()


def test_semantic_hit_is_answered_to_the_sdk_with_its_similarity(start_tenant_gateway, mock_addr):
    """The semantic cache through the SDK: prompts embedded through the gateway's own `embed`
    alias (the mock's embeddings are bags of words, so the same words in another case and
    punctuation are the same meaning), hits replayed as JSON and as a stream, counted in the
    usage report."""
    config = tenant_gateway_config(mock_addr)
    config["models"]["embed"] = {"deployments": [{"provider": "up", "model": "text-embedding-3-small~embedding_dims=256"}]}
    config["cache"] = {
        "mode": "on",
        "semantic": {"enabled": True, "embedding": {"alias": "embed"}, "threshold": 0.9, "short_threshold": 0.95},
    }
    gw = start_tenant_gateway("cache-semantic", config)
    try:
        with gw.client() as client:
            status, first = ask(client, "Which planet in the solar system is the largest?")
            assert status == "miss"
            settle()
            raw = client.chat.completions.with_raw_response.create(
                model="fast", messages=[{"role": "user", "content": "which PLANET in the solar system is the largest"}]
            )
            assert raw.headers["x-tollgate-cache"] == "semantic-hit"
            assert float(raw.headers["x-tollgate-cache-similarity"]) > 0.99
            assert raw.parse().choices[0].message.content == first.choices[0].message.content

            status, stream = ask(client, "Which planet in the solar system is the largest", stream=True)
            assert status == "semantic-hit"
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == first.choices[0].message.content

            # Another question, and the same one with semantic matching turned off, miss.
            assert ask(client, "Which planet in the solar system is the smallest?")[0] == "miss"
            off = {"x-tollgate-cache": "semantic=off"}
            assert ask(client, "which planet in the solar system is the LARGEST", extra_headers=off)[0] == "miss"
        # Five chat requests, and four embeddings calls (every lookup but the semantic=off one),
        # each metered to the tenant.
        report = usage_report(gw, 9)["totals"]
        assert (report["cache_hits"], report["semantic_hits"], report["cache_misses"]) == (2, 2, 3)
    finally:
        gw.stop()
