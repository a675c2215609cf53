"""Rate limits, budgets and cost as the official OpenAI SDK sees them (docs/limits.md).

Each group of tests runs its own gateway (`start_tenant_gateway` in conftest.py): a SQLite
store, the tenant `t` made by `tollgate bootstrap` (its key is what the SDK presents), the
config's limits for it, and the mock upstream's model `m` priced at $1 per token in and out.
Windows are per minute, so the limits are small and the tests never wait for a window to pass.
"""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal

import httpx
import httpx2
import openai
import pytest

from support import ADMIN_KEY, NANODOLLARS_PER_TOKEN, TENANT_NAME, tenant_gateway_config

HI = [{"role": "user", "content": "hi"}]
RATE_HEADERS = [
    f"x-ratelimit-{what}-{unit}" for unit in ("requests", "tokens") for what in ("limit", "remaining", "reset")
]


def seconds(reset: str) -> float:
    """OpenAI's reset duration (`250ms`, `20s`, `1m0s`, `1h2m3s`) in seconds."""
    m = re.fullmatch(r"(\d+)ms|(?:(\d+)h)?(?:(\d+)m)?(\d+)s", reset)
    assert m, f"not an OpenAI reset duration: {reset!r}"
    if m.group(1) is not None:
        return int(m.group(1)) / 1000
    h, mins, s = (int(g or 0) for g in m.group(2, 3, 4))
    return h * 3600 + mins * 60 + s


class Recorder:
    """An httpx2 client for the SDK that records every response it gets: (status, headers, when)."""

    def __init__(self):
        self.responses: list[tuple[int, httpx2.Headers, float]] = []
        self.http = httpx2.Client(
            trust_env=False,
            timeout=20,
            event_hooks={"response": [lambda r: self.responses.append((r.status_code, r.headers, time.monotonic()))]},
        )

    @property
    def statuses(self) -> list[int]:
        return [s for s, _, _ in self.responses]

    def gaps(self) -> list[float]:
        """Seconds between one response and the next (the SDK's wait, plus the next call)."""
        times = [t for _, _, t in self.responses]
        return [b - a for a, b in zip(times, times[1:])]


def tenant_id(gw) -> str:
    with gw.admin() as admin:
        resp = admin.get("/admin/v1/tenants")
        assert resp.status_code == 200, resp.text
        ids = [t["id"] for t in resp.json()["data"] if t["name"] == TENANT_NAME]
    assert len(ids) == 1, resp.text
    return ids[0]


def usage_report(gw, requests: int, **params) -> dict:
    """GET /admin/v1/tenants/{t}/usage (super-admin), once the usage records of `requests`
    requests are written (they are written in batches, shortly after each request)."""
    path = f"/admin/v1/tenants/{tenant_id(gw)}/usage"
    deadline = time.monotonic() + 10
    with gw.admin() as admin:
        while True:
            resp = admin.get(path, params=params)
            assert resp.status_code == 200, resp.text
            report = resp.json()
            if report["totals"]["requests"] >= requests or time.monotonic() > deadline:
                assert report["totals"]["requests"] == requests, f"one usage record per request: {report}"
                return report
            time.sleep(0.1)


def nanodollars(cost_usd: object) -> int:
    """The report's cost (an exact decimal string of dollars) in integer nano-dollars."""
    assert isinstance(cost_usd, str), f"cost is a decimal string, not {type(cost_usd).__name__}: {cost_usd!r}"
    assert re.fullmatch(r"\d+\.\d{9}", cost_usd), cost_usd
    return int(cost_usd.replace(".", ""))


def stop_after(gw):
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def _show_limits_gateway_log_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for name in request.fixturenames:
            if name.endswith("_gw"):
                print(f"---- {name} log (tail) ----")
                print("\n".join(request.getfixturevalue(name).log().splitlines()[-15:]))


# === a key's requests per minute ===

RPM, TPM = 3, 100_000


@pytest.fixture(scope="module")
def rpm_gw(start_tenant_gateway, mock_addr):
    limits = {"defaults": {"key": {"rate": {"rpm": RPM, "tpm": TPM}}}}
    yield from stop_after(start_tenant_gateway("rpm", tenant_gateway_config(mock_addr, limits)))


def test_limits_key_rpm_headers_through_the_raw_response_then_a_rate_limit_error(rpm_gw):
    with rpm_gw.client() as client:
        resets = []
        for remaining in range(RPM - 1, -1, -1):
            raw = client.chat.completions.with_raw_response.create(model="fast", messages=HI, max_tokens=5)
            h = raw.headers
            assert raw.status_code == 200
            assert raw.parse().choices[0].message.content == "mock: hi"
            assert h["x-ratelimit-limit-requests"] == str(RPM)
            assert h["x-ratelimit-remaining-requests"] == str(remaining)
            assert h["x-ratelimit-limit-tokens"] == str(TPM)
            # The request's estimate (input + max_tokens) was reserved.
            assert 0 < int(h["x-ratelimit-remaining-tokens"]) < TPM
            assert seconds(h["x-ratelimit-reset-tokens"]) < 1
            resets.append(seconds(h["x-ratelimit-reset-requests"]))
        # Each request takes 60/RPM = 20 s of the bucket: it is full again 20, 40, 60 s later.
        assert resets == [20, 40, 60]

        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model="fast", messages=HI, max_tokens=5)
    err = e.value
    assert err.status_code == 429
    assert err.code == "rate_limit_exceeded" and err.body["code"] == "rate_limit_exceeded"
    assert err.type == "rate_limit_error"
    assert "requests per minute of this API key" in err.message and f"limit {RPM}" in err.message
    # The next slot frees 20 s after the first request.
    assert 15 <= int(err.response.headers["retry-after"]) <= 20
    # Worth retrying later: the SDK is not told otherwise.
    assert err.response.headers.get("x-should-retry") != "false"


def test_limits_the_super_admin_key_is_not_held_to_tenant_limits(rpm_gw):
    with openai.OpenAI(base_url=f"{rpm_gw.base}/v1", api_key=ADMIN_KEY, max_retries=0) as c:
        for _ in range(RPM + 1):
            raw = c.chat.completions.with_raw_response.create(model="echo", messages=HI)
            assert raw.status_code == 200
            assert "x-ratelimit-limit-requests" not in raw.headers


# === the SDK's own retries (max_retries=2, the default) ===


@pytest.fixture(scope="module")
def rpm60_gw(start_tenant_gateway, mock_addr):
    # One request a second: a refusal's Retry-After is 1 s, which the SDK honours.
    limits = {"defaults": {"key": {"rate": {"rpm": 60}}}}
    yield from stop_after(start_tenant_gateway("rpm60", tenant_gateway_config(mock_addr, limits)))


def test_limits_sdk_retry_waits_for_retry_after_and_then_gets_through(rpm60_gw):
    """The gateway's Retry-After is honest: the SDK waits that long, retries once, and is admitted."""
    rec = Recorder()
    with rpm60_gw.client(max_retries=2, http_client=rec.http) as client:
        for _ in range(120):  # the bucket holds a minute's requests (60), then refills at 1/s
            first = len(rec.responses)
            client.chat.completions.create(model="echo", messages=HI)
            if rec.statuses[first] == 429:
                break
        else:
            pytest.fail(f"never refused: {rec.statuses}")
    calls = rec.responses[first:]
    assert [s for s, _, _ in calls] == [429, 200], "refused once, admitted on the SDK's retry"
    assert calls[0][1]["retry-after"] == "1"
    # The SDK reads retry-after-ms first: the exact wait, under a second here.
    wait_ms = int(calls[0][1]["retry-after-ms"])
    assert 1 <= wait_ms <= 1000
    assert rec.gaps()[-1] >= wait_ms / 1000 - 0.01, "the SDK waited retry-after-ms before retrying"


@pytest.fixture(scope="module")
def conc_gw(start_tenant_gateway, mock_addr):
    limits = {"defaults": {"key": {"rate": {"max_concurrent": 1}}}}
    yield from stop_after(start_tenant_gateway("conc", tenant_gateway_config(mock_addr, limits)))


class SlotHolder(threading.Thread):
    """A `slow` chat (4 s upstream) with the gateway's tenant key, in the background."""

    def __init__(self, gw):
        super().__init__(daemon=True)
        self.gw = gw
        self.resp: httpx.Response | None = None

    def run(self):
        with httpx.Client(timeout=20, trust_env=False) as http:
            self.resp = http.post(
                f"{self.gw.base}/v1/chat/completions",
                headers={"Authorization": f"Bearer {self.gw.key}"},
                json={"model": "slow", "messages": HI, "max_tokens": 5},
            )


def hold_the_key_slot(gw) -> SlotHolder:
    """Starts a SlotHolder and returns once the key's one slot is seen taken (a probe is refused)."""
    with gw.client() as probe:
        for _ in range(3):
            holder = SlotHolder(gw)
            holder.start()
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and holder.is_alive():
                try:
                    probe.chat.completions.create(model="echo", messages=HI)
                except openai.RateLimitError:
                    return holder
                time.sleep(0.02)
            # The probe took the slot just as the holder asked for it: try again.
            holder.join(10)
    pytest.fail("the slow request never held the key's slot")


def test_limits_sdk_retries_twice_per_retry_after_then_raises(conc_gw):
    """While the key's one slot is held by a slow request, the SDK's two retries (1 s apart,
    per Retry-After) are refused too, and it raises RateLimitError."""
    holder = hold_the_key_slot(conc_gw)
    try:
        rec = Recorder()
        started = time.monotonic()
        with conc_gw.client(max_retries=2, http_client=rec.http) as client:
            with pytest.raises(openai.RateLimitError) as e:
                client.chat.completions.create(model="echo", messages=HI)
        elapsed = time.monotonic() - started
        assert holder.is_alive(), "the slow request was still in flight"
    finally:
        holder.join(10)
    assert holder.resp is not None and holder.resp.status_code == 200, holder.resp and holder.resp.text
    assert rec.statuses == [429, 429, 429], "the first try and the SDK's two retries"
    assert all(h["retry-after"] == "1" for _, h, _ in rec.responses)
    assert all(gap >= 0.99 for gap in rec.gaps()), f"the SDK waited Retry-After: {rec.gaps()}"
    assert elapsed >= 2.0
    assert e.value.code == "rate_limit_exceeded"
    assert "concurrent requests of this API key" in e.value.message


# === a spent budget ===

BUDGET_USD = 20


@pytest.fixture(scope="module")
def budget_gw(start_tenant_gateway, mock_addr):
    limits = {"defaults": {"tenant": {"budgets": [{"period": "total", "limit_usd": str(BUDGET_USD)}]}}}
    yield from stop_after(start_tenant_gateway("budget", tenant_gateway_config(mock_addr, limits)))


def test_limits_a_spent_budget_is_insufficient_quota_and_the_sdk_does_not_retry(budget_gw):
    spent = 0  # dollars: $1 per token
    admitted = 0
    with budget_gw.client() as client:
        for _ in range(BUDGET_USD):
            try:
                r = client.chat.completions.create(model="fast", messages=HI, max_tokens=5)
            except openai.RateLimitError as e:
                err = e
                break
            admitted += 1
            spent += r.usage.prompt_tokens + r.usage.completion_tokens
        else:
            pytest.fail(f"${spent} spent of ${BUDGET_USD} and never refused")
    assert admitted >= 1, "the budget admitted some requests first"
    assert spent <= BUDGET_USD
    assert err.status_code == 429
    assert err.code == "insufficient_quota" and err.body["code"] == "insufficient_quota"
    assert err.type == "insufficient_quota"
    assert "total budget of this tenant" in err.message and f"${BUDGET_USD}" in err.message
    assert err.response.headers["x-should-retry"] == "false"

    # With the SDK's default retries: one request, no waiting.
    rec = Recorder()
    started = time.monotonic()
    with budget_gw.client(max_retries=2, http_client=rec.http) as client:
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model="fast", messages=HI, max_tokens=5)
    assert time.monotonic() - started < 0.5
    assert rec.statuses == [429], "the SDK did not retry"
    assert e.value.code == "insufficient_quota"

    # The refused requests cost nothing; the admitted ones cost their tokens.
    totals = usage_report(budget_gw, admitted + 2)["totals"]
    assert totals["errors"] == 2
    assert nanodollars(totals["cost_usd"]) == spent * NANODOLLARS_PER_TOKEN


# === streaming under limits ===


@pytest.fixture(scope="module")
def stream_gw(start_tenant_gateway, mock_addr):
    limits = {"defaults": {"key": {"rate": {"rpm": 10, "tpm": TPM}}}}
    yield from stop_after(start_tenant_gateway("stream", tenant_gateway_config(mock_addr, limits)))


def test_limits_streams_carry_the_rate_limit_headers(stream_gw):
    text = [{"role": "user", "content": "stream me under a limit"}]
    with stream_gw.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="fast", messages=text, stream=True, stream_options={"include_usage": True}
        )
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("text/event-stream")
        first = {h: raw.headers.get(h) for h in RATE_HEADERS}
        chunks = list(raw.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "mock: stream me under a limit"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

        with client.chat.completions.with_streaming_response.create(model="fast", messages=text, stream=True) as resp:
            second = {h: resp.headers.get(h) for h in RATE_HEADERS}
            assert "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices) == (
                "mock: stream me under a limit"
            )
    for h in (first, second):
        assert None not in h.values(), h
        assert h["x-ratelimit-limit-requests"] == "10"
        assert h["x-ratelimit-limit-tokens"] == str(TPM)
        assert 0 < int(h["x-ratelimit-remaining-tokens"]) < TPM
        assert seconds(h["x-ratelimit-reset-requests"]) > 0 and seconds(h["x-ratelimit-reset-tokens"]) > 0
    assert int(second["x-ratelimit-remaining-requests"]) == int(first["x-ratelimit-remaining-requests"]) - 1


# === cost ===


@pytest.fixture(scope="module")
def cost_gw(start_tenant_gateway, mock_addr):
    yield from stop_after(start_tenant_gateway("cost", tenant_gateway_config(mock_addr)))


def test_limits_usage_report_cost_is_the_tokens_the_sdk_saw_times_the_price(cost_gw):
    prompts = ["hi", "what does a tollgate cost", "one two three four five six seven"]
    usages = []
    with cost_gw.client() as client:
        for i, p in enumerate(prompts):
            r = client.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": p}], max_tokens=10 + i
            )
            usages.append(r.usage)
        stream = client.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "and a streamed one"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        usages.append([c for c in stream][-1].usage)
    input_tokens = sum(u.prompt_tokens for u in usages)
    output_tokens = sum(u.completion_tokens for u in usages)
    assert input_tokens > 0 and output_tokens > 0

    report = usage_report(cost_gw, len(usages))
    totals = report["totals"]
    assert totals["errors"] == 0
    assert (totals["input_tokens"], totals["output_tokens"]) == (input_tokens, output_tokens)
    assert nanodollars(totals["cost_usd"]) == (input_tokens + output_tokens) * NANODOLLARS_PER_TOKEN

    by_model = usage_report(cost_gw, len(usages), group_by="model")
    assert [(g["group"], nanodollars(g["cost_usd"])) for g in by_model["data"]] == [
        ("fast", (input_tokens + output_tokens) * NANODOLLARS_PER_TOKEN)
    ]
