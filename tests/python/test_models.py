"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

import openai
import pytest

from support import ADMIN_KEY, gateway_config


@pytest.fixture(scope="module")
def configured_aliases(mock_addr) -> set[str]:
    return set(gateway_config(mock_addr)["models"])


def test_models_list_names_every_configured_alias(client, configured_aliases):
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert set(ids) == configured_aliases
    assert len(ids) == len(set(ids)), "no alias is listed twice"
    for m in models:
        assert m.object == "model"
        assert m.owned_by


@pytest.mark.parametrize("alias", ["openai-chat", "echo", "cohere-embed", "fallback"])
def test_models_retrieve(client, alias):
    m = client.models.retrieve(alias)
    assert m.id == alias
    assert m.object == "model"


def test_models_retrieve_unknown_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.status_code == 404
    assert "no-such-model" in e.value.message


def test_models_need_the_key(gateway_url):
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=ADMIN_KEY + "-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
