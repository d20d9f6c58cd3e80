from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def tether_home(tmp_path, monkeypatch):
    """Every test gets its own empty TETHER_HOME and no provider keys."""
    home = tmp_path / "tether-home"
    monkeypatch.setenv("TETHER_HOME", str(home))
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY", "GROQ_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return home
