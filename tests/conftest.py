from __future__ import annotations
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakeserver.py

import pytest


@pytest.fixture(autouse=True)
def tether_home(tmp_path, monkeypatch):
    """Every test gets its own empty TETHER_HOME and no provider keys."""
    home = tmp_path / "tether-home"
    monkeypatch.setenv("TETHER_HOME", str(home))
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return home


# -- router / turn fixtures: a local OpenAI-compatible server with per-model faults --------

@pytest.fixture(scope="session")
def fake_server_session():
    from fakeserver import FakeServer

    srv = FakeServer(timeout_sleep=1.5).start()
    yield srv
    srv.stop()


@pytest.fixture
def fake_server(fake_server_session):
    """The shared fake server, emptied of faults and recorded requests for each test. A
    rolling summary still being made when a test ends finishes before the next begins, so
    its call never lands in another test's record."""
    fake_server_session.reset()
    yield fake_server_session
    join_summaries(30)
    fake_server_session.reset()


def join_summaries(timeout: float) -> None:
    """Wait for the rolling summaries being made in their threads (tether/turn/summaries.py)."""
    import threading

    for th in threading.enumerate():
        if th.name.startswith("tether-summary-"):
            th.join(timeout)


def wait_for(done, timeout: float = 10.0) -> None:
    """Poll until done() (a summary is made in a thread after the turn returns)."""
    import time

    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


# -- the session store's tests (test_store*.py) ------------------------------------------

@pytest.fixture
def client(tether_home):
    """A client on the test's own home."""
    from tether import Tether

    return Tether()


def sessions_dir(client):
    return client.home / "sessions"


def router_config(srv, **overrides):
    """A config with three models on the fake server: main -> backup, plus a small-window one."""
    def m(name, **kw):
        return {"model": f"openai/{name}", "api_base": srv.base, "api_key": f"sk-test-{name}-SECRET", **kw}

    cfg = {
        "default_model": "main", "fallbacks": ["backup"], "retries": 1, "retry_after_cap": 0.05,
        "backoff": 0.01, "timeout": 0.6, "breaker_failures": 0,
        "models": {"main": m("main"), "backup": m("backup"), "small": m("small", context_window=400)},
    }
    models = overrides.pop("models", {})
    cfg.update(overrides)
    for k, v in models.items():
        cfg["models"][k] = m(k, **v) if "model" not in v else v
    return cfg


@pytest.fixture
def make_tether(fake_server, tether_home):
    """make_tether(**config_overrides) -> Tether on the fake server, same home each call."""
    from tether import Tether

    def make(**overrides):
        return Tether(home=tether_home, config=router_config(fake_server, **overrides))

    return make
