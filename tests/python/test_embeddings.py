"""Embeddings through every provider kind that has them."""

from __future__ import annotations

import math

import pytest

from support import EMBED_KINDS

TEXTS = ["the first text", "a second one", "and a third"]


@pytest.mark.parametrize("kind", EMBED_KINDS, ids=str)
def test_embeddings_of_a_batch(client, kind):
    raw = client.embeddings.with_raw_response.create(model=kind.alias, input=TEXTS, encoding_format="float")
    assert raw.headers.get("x-tollgate-provider") == kind.kind
    assert raw.headers.get("x-tollgate-deployment") == kind.deployment
    result = raw.parse()

    assert result.object == "list"
    assert len(result.data) == len(TEXTS)
    assert [d.index for d in result.data] == list(range(len(TEXTS)))
    for d in result.data:
        assert d.object == "embedding"
        assert len(d.embedding) == kind.dims
        assert all(isinstance(x, float) and math.isfinite(x) for x in d.embedding)
    assert result.data[0].embedding != result.data[1].embedding, "different texts, different vectors"
    assert result.usage.prompt_tokens >= 0
    assert result.usage.total_tokens >= result.usage.prompt_tokens


@pytest.mark.parametrize("kind", EMBED_KINDS, ids=str)
def test_embedding_of_one_string_is_deterministic(client, kind):
    a = client.embeddings.create(model=kind.alias, input="same text", encoding_format="float")
    b = client.embeddings.create(model=kind.alias, input="same text", encoding_format="float")
    assert len(a.data) == 1
    assert len(a.data[0].embedding) == kind.dims
    assert a.data[0].embedding == b.data[0].embedding


@pytest.mark.parametrize("kind", EMBED_KINDS, ids=str)
def test_the_sdk_default_base64_encoding_decodes(client, kind):
    # Without encoding_format the SDK asks for base64 and decodes it itself; the gateway must
    # answer in the encoding asked for (or floats, which the SDK also accepts).
    result = client.embeddings.create(model=kind.alias, input=["x y z"])
    assert len(result.data) == 1
    assert len(result.data[0].embedding) == kind.dims
