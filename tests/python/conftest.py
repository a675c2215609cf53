"""Session fixtures: one mock-llm upstream, one tollgate gateway in front of it, SDK clients.

Both processes listen on ephemeral ports of 127.0.0.1; their addresses are read from their
logs (files in a temp dir, so a full pipe can never block them). The binaries come from
TOLLGATE_BIN / MOCK_LLM_BIN (set by scripts/test-python.sh), else $CARGO_TARGET_DIR/debug or
target/debug.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from support import ADMIN_KEY, MOCK_KEY, TENANT_NAME, TENANT_OWNER, UNSET_KEY_VAR, gateway_config

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0

# Never send the tests' loopback traffic through a proxy from the environment (the SDKs and the
# gateway's HTTP client both honour the *_PROXY variables).
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var), "127.0.0.1", "localhost"]))


def _binary(env_var: str, name: str) -> Path:
    if os.environ.get(env_var):
        path = Path(os.environ[env_var])
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
        path = target / "debug" / name
    if not path.is_file():
        pytest.exit(f"{path} does not exist; run: cargo build -p tollgate -p mock-llm", returncode=2)
    return path


class Process:
    """A child process whose stderr goes to a file we can scan."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = regex.search(self.log())
            if m:
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not log /{pattern}/ within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def wait_until_serving(proc):
    """The base URL of a gateway `proc` that logged its address and answers /healthz."""
    m = proc.wait_for(r'"address":"([^"]+)"|tollgate listening address=(\S+)')
    base = f"http://{m.group(1) or m.group(2)}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2, trust_env=False).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"GET {base}/healthz never answered 200:\n{proc.log()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def mock_addr(tmp_path_factory) -> str:
    """Starts mock-llm; yields its host:port."""
    log_dir = tmp_path_factory.mktemp("mock-llm")
    proc = Process("mock-llm", [str(_binary("MOCK_LLM_BIN", "mock-llm")), "--listen", "127.0.0.1:0"], log_dir)
    try:
        addr = proc.wait_for(r"mock-llm listening on (\S+)").group(1)
        yield addr
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def gateway(mock_addr, tmp_path_factory):
    """Starts tollgate in front of the mock; yields (base_url, process)."""
    work = tmp_path_factory.mktemp("tollgate")
    config_path = work / "tollgate.yaml"
    # JSON is YAML: no YAML library needed.
    config_path.write_text(json.dumps(gateway_config(mock_addr), indent=2))

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.pop(UNSET_KEY_VAR, None)
    env.update(
        TOLLGATE_ADMIN_KEY=ADMIN_KEY,
        MOCK_KEY=MOCK_KEY,
        TOLLGATE_LOG="info",
        RUST_BACKTRACE="1",
    )
    argv = [
        str(_binary("TOLLGATE_BIN", "tollgate")),
        "--config",
        str(config_path),
        "--log-format",
        "json",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]
    proc = Process("tollgate", argv, work, env)
    try:
        base = wait_until_serving(proc)
        yield base, proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway) -> str:
    return gateway[0]


@pytest.fixture(scope="session")
def gateway_log(gateway):
    """A function returning the gateway's log so far (for failure messages)."""
    return gateway[1].log


@pytest.fixture(scope="session")
def client(gateway_url) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=20)
    yield c
    c.close()


@pytest.fixture(scope="session")
def http(gateway_url) -> httpx.Client:
    """A raw client with the right key, for what the SDK hides."""
    with httpx.Client(
        base_url=gateway_url,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=20,
        trust_env=False,
    ) as c:
        yield c


class TenantGateway:
    """A gateway of its own (see `start_tenant_gateway`): its URL, the bootstrap tenant key, logs."""

    def __init__(self, base: str, key: str, proc: Process, work: Path):
        self.base = base
        self.key = key  # the tenant owner's key (inference + admin scopes) from `bootstrap`
        self.proc = proc
        self.work = work

    def client(self, key: str | None = None, **kwargs) -> openai.OpenAI:
        """An SDK client on this gateway with the tenant key (max_retries=0 unless given)."""
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 20)
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=key or self.key, **kwargs)

    def admin(self) -> httpx.Client:
        """A raw client with the super-admin key."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=20, trust_env=False
        )

    def log(self) -> str:
        return self.proc.log()

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture(scope="session")
def start_tenant_gateway(tmp_path_factory):
    """A factory: start_tenant_gateway(name, config) writes `config` (a dict; it should name a
    SQLite store relative to the config file), runs `tollgate bootstrap --tenant t --owner o` on
    it for a tenant key, and starts `tollgate serve`; returns a TenantGateway. Call its stop()
    when done (module fixtures); whatever is left running is stopped at the end of the session."""
    started: list[TenantGateway] = []
    binary = str(_binary("TOLLGATE_BIN", "tollgate"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update(TOLLGATE_ADMIN_KEY=ADMIN_KEY, TOLLGATE_LOG="info", RUST_BACKTRACE="1")

    def start(name: str, config: dict) -> TenantGateway:
        work = tmp_path_factory.mktemp(f"tollgate-{name}")
        config_path = work / "tollgate.yaml"
        config_path.write_text(json.dumps(config, indent=2))
        boot = subprocess.run(
            [binary, "--config", str(config_path), "bootstrap", "--tenant", TENANT_NAME, "--owner", TENANT_OWNER],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
        )
        if boot.returncode != 0:
            raise RuntimeError(f"tollgate bootstrap failed ({boot.returncode}):\n{boot.stderr}")
        key = boot.stdout.strip()
        argv = [binary, "--config", str(config_path), "--log-format", "json", "serve", "--listen", "127.0.0.1:0"]
        proc = Process(f"tollgate-{name}", argv, work, env)
        gw = None
        try:
            base = wait_until_serving(proc)
            gw = TenantGateway(base, key, proc, work)
            started.append(gw)
            return gw
        finally:
            if gw is None:
                proc.stop()

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(autouse=True)
def _show_gateway_log_on_failure(request):
    """On failure, print the gateway's log tail (pytest shows captured output of failed tests)."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "gateway" in request.fixturenames:
        log = request.getfixturevalue("gateway")[1].log()
        print("---- tollgate log (tail) ----")
        print("\n".join(log.splitlines()[-15:]))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
