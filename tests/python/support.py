"""What the test gateway serves: providers, model aliases and what each answers.

conftest.py renders GATEWAY_CONFIG into the gateway's YAML; the tests parametrize over the
tables below. Every upstream provider points at the one mock-llm process.
"""

from __future__ import annotations

from dataclasses import dataclass

# The provider key the gateway sends upstream (env MOCK_KEY of the gateway). It must never
# appear in anything a client sees.
MOCK_KEY = "sk-mock-UPSTREAM-SECRET-7f3a9c2e51"
# The key clients present to the gateway (TOLLGATE_ADMIN_KEY).
ADMIN_KEY = "tg-test-admin-key-0123456789"
# Referenced by the `nokey` provider and deliberately unset in the gateway's environment.
UNSET_KEY_VAR = "TOLLGATE_PYTEST_UNSET_PROVIDER_KEY"
# Small, so a 413 is cheap to provoke.
MAX_BODY_BYTES = 65536


@dataclass(frozen=True)
class ChatKind:
    """One provider kind and the chat alias served by it."""

    kind: str  # the provider kind, also what x-tollgate-provider says
    alias: str  # the model alias clients call
    deployment: str  # the deployment name (x-tollgate-deployment)
    mock: bool  # answered by mock-llm ("mock: <text>", tools, images) rather than echo

    def expected_text(self, user_text: str) -> str:
        return f"mock: {user_text}" if self.mock else user_text

    def __str__(self) -> str:  # readable test ids
        return self.kind


CHAT_KINDS = [
    ChatKind("openai", "openai-chat", "openai/mock-model", True),
    ChatKind("azure", "azure-chat", "azure/mock-deployment", True),
    ChatKind("openai_compatible", "compat-chat", "compat/mock-model", True),
    ChatKind("anthropic", "anthropic-chat", "anthropic/claude-mock", True),
    ChatKind("gemini", "gemini-chat", "gemini/gemini-mock", True),
    ChatKind("cohere", "cohere-chat", "cohere/command-mock", True),
    ChatKind("echo", "echo", "echo/echo-1", False),
]
# Kinds whose upstream is the mock: they call tools and count images; echo does neither.
MOCK_CHAT_KINDS = [k for k in CHAT_KINDS if k.mock]


@dataclass(frozen=True)
class EmbedKind:
    kind: str
    alias: str
    deployment: str
    dims: int  # default dimensions: mock-llm answers 8, echo 16

    def __str__(self) -> str:
        return self.kind


EMBED_KINDS = [
    EmbedKind("openai", "openai-embed", "openai/text-embedding-mock", 8),
    EmbedKind("azure", "azure-embed", "azure/embed-deployment", 8),
    EmbedKind("openai_compatible", "compat-embed", "compat/text-embedding-mock", 8),
    EmbedKind("cohere", "cohere-embed", "cohere/embed-mock", 8),
    EmbedKind("echo", "echo-embed", "echo/echo-embed-1", 16),
]

# Fault aliases: the mock's knob suffix on the model name, served by openai_compatible.
FAULT_429 = "fault-429"
FAULT_500 = "fault-500"
FAULT_400 = "fault-400"
FAULT_GARBAGE = "fault-garbage"
FAULT_HANG = "fault-hang"
FAULT_DISCONNECT = "fault-disconnect"
FALLBACK = "fallback"
FALLBACK_SECOND = "secondary-ok"
NOKEY = "nokey-chat"
RETRY_AFTER_SECONDS = 2


def gateway_config(mock_addr: str) -> dict:
    """The gateway config (as a dict; JSON is valid YAML) for a mock listening on mock_addr."""
    mock = f"http://{mock_addr}"
    providers = {
        "openai": {"kind": "openai", "base_url": f"{mock}/v1", "api_key": "${MOCK_KEY}"},
        "azure": {
            "kind": "azure",
            "base_url": mock,
            "api_key": "${MOCK_KEY}",
            "api_version": "2024-10-21",
        },
        "compat": {"kind": "openai_compatible", "base_url": f"{mock}/v1"},
        "anthropic": {"kind": "anthropic", "base_url": mock, "api_key": "${MOCK_KEY}"},
        "gemini": {"kind": "gemini", "base_url": mock, "api_key": "${MOCK_KEY}"},
        "cohere": {"kind": "cohere", "base_url": mock, "api_key": "${MOCK_KEY}"},
        "echo": {"kind": "echo"},
        "nokey": {"kind": "openai", "base_url": f"{mock}/v1", "api_key": "${%s}" % UNSET_KEY_VAR},
    }

    def one(provider: str, model: str, **extra) -> dict:
        return {"deployments": [{"provider": provider, "model": model, **extra}]}

    models = {}
    for k in CHAT_KINDS + EMBED_KINDS:
        provider, model = k.deployment.split("/", 1)
        models[k.alias] = one(provider, model)
    models.update(
        {
            FAULT_429: one("compat", f"mock-model~status=429,retry_after={RETRY_AFTER_SECONDS}"),
            FAULT_500: one("compat", "mock-model~status=500"),
            FAULT_400: one("compat", "mock-model~status=400"),
            FAULT_GARBAGE: one("compat", "mock-model~garbage"),
            FAULT_HANG: one("compat", "mock-model~hang", timeouts={"first_byte": "1s"}),
            # chunk_delay_ms: without a pause the mock buffers the first events and hyper drops them
            # with the connection, so the break would come before the first byte.
            FAULT_DISCONNECT: one("compat", "mock-model~disconnect_after=3,chunk_delay_ms=20"),
            FALLBACK: {
                "deployments": [
                    {"provider": "compat", "model": "mock-model~status=500", "name": "primary-broken"},
                    {"provider": "compat", "model": "mock-model", "name": FALLBACK_SECOND},
                ]
            },
            NOKEY: one("nokey", "mock-model"),
        }
    )
    return {
        "listen": "127.0.0.1:0",
        "server": {"max_body_bytes": MAX_BODY_BYTES, "shutdown_grace": "1s"},
        "providers": providers,
        "models": models,
    }


def assert_no_secret(*texts: object) -> None:
    """The upstream key must not leak into anything a client sees."""
    for t in texts:
        assert MOCK_KEY not in str(t), f"the provider key leaked into: {t!r}"


def error_texts(exc) -> list[object]:
    """Everything a client can read of an SDK error: message, body, raw response."""
    out: list[object] = [str(exc), getattr(exc, "body", None)]
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            out.append(response.text)
        except Exception:  # a streamed response may be closed already
            pass
        out.append(dict(response.headers))
    return out


# === gateways of their own (test_limits.py): a store, a tenant, limits and prices ===

# The mock's model names start with "m" and are priced at $1 per token in and out (1e6 USD per
# million tokens), so a request's cost in dollars is its token count.
NANODOLLARS_PER_TOKEN = 1_000_000_000
# The CLI's bootstrap creates this tenant (and its owner); its key is the gateway's tenant key.
TENANT_NAME = "t"
TENANT_OWNER = "o"


def tenant_gateway_config(mock_addr: str, limits: dict | None = None) -> dict:
    """A config on a SQLite store next to the config file, with `echo` (free), `fast` (the mock,
    model `m`) and `slow` (the mock, 4 s before it answers), the mock priced at $1 per token,
    and `limits` as the config's `limits` section."""
    mock = f"http://{mock_addr}"
    config = {
        "listen": "127.0.0.1:0",
        "server": {"shutdown_grace": "1s"},
        "store": {"url": "sqlite://tollgate.db"},
        "providers": {
            "echo": {"kind": "echo"},
            "up": {"kind": "openai_compatible", "base_url": f"{mock}/v1"},
        },
        "models": {
            "echo": {"deployments": [{"provider": "echo", "model": "echo-1"}]},
            "fast": {"deployments": [{"provider": "up", "model": "m"}]},
            "slow": {"deployments": [{"provider": "up", "model": "m~latency_ms=4000"}]},
        },
        "pricing": {
            "prices": [
                {
                    "provider": "mock",
                    "model": "m*",
                    "effective_from": "2024-01-01",
                    "input": "1000000",
                    "output": "1000000",
                }
            ]
        },
    }
    if limits is not None:
        config["limits"] = limits
    return config
