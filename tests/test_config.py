"""Router configuration: schema, validation messages, defaults, secrets kept out of files."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tether import ConfigError, Tether
from tether.router.config import ECHO_MODEL, inspect_config, load_config, parse_config

ISSUE_EXAMPLE = textwrap.dedent('''
    default_model = "fast"
    fallbacks = ["smart", "local"]
    [models.fast]
    model = "gpt-4o-mini"
    [models.smart]
    model = "anthropic/claude-sonnet-4-5"
    fallbacks = ["fast"]
    [models.local]
    model = "openai/llama3"
    api_base = "http://127.0.0.1:8080/v1"
    api_key_env = "LOCAL_KEY"
    context_window = 8192
    max_output_tokens = 1024
    [[routes]]
    when = { min_prompt_tokens = 20000 }
    model = "smart"
''')


def test_issue_example_parses_with_chains_and_routes(tether_home):
    tether_home.mkdir(parents=True)
    (tether_home / "config.toml").write_text(ISSUE_EXAMPLE)
    cfg = load_config(tether_home)
    assert cfg.source == "file" and cfg.path == tether_home / "config.toml"
    assert cfg.default_model == "fast"
    assert cfg.chain("fast") == ["fast", "smart", "local"]
    assert cfg.chain("smart") == ["smart", "fast"]  # per-model chain overrides the global one
    assert cfg.models["local"].context_window == 8192
    assert cfg.pick_route("x", 25_000) == ("smart", 0)
    assert cfg.pick_route("x", 100) is None
    # a raw litellm string is a model too
    assert cfg.spec("openai/gpt-4o").model == "openai/gpt-4o"


@pytest.mark.parametrize("raw, key", [
    ({"defualt_model": "x"}, "defualt_model"),
    ({"models": {"a": {"model": "gpt-4o", "context_window": "big"}}}, "models.a.context_window"),
    ({"models": {"a": {"api_base": "http://x"}}}, "models.a.model"),
    ({"models": {"a": {"model": "gpt-4o", "temprature": 1}}}, "models.a.temprature"),
    ({"models": {"a": {"model": "gpt-4o"}}, "fallbacks": ["nosuch"]}, "fallbacks[0]"),
    ({"routes": [{"model": "gpt-4o", "when": {"min_tokens": 3}}]}, "routes[0].when.min_tokens"),
    ({"retries": True}, "retries"),
    ({"models": {"a": {"model": "gpt-4o", "fallbacks": ["b"]}}}, "models.a.fallbacks[0]"),
    ({"routes": [{"model": "gpt-4o", "when": {"contains": ["code", 2]}}]}, "routes[0].when.contains[1]"),
    ({"models": {"a": {"model": "gpt-4o"}, "b": {"model": "gpt-4o-mini"}}}, "default_model"),
    ({"store": {"url": "redis://x"}}, "store"),  # no such section: it was silently ignored
    # values Python accepts as numbers but a reader does not mean as one, or that cannot work
    ({"timeout": True}, "timeout"),
    ({"backoff": float("nan")}, "backoff"),
    ({"retry_after_cap": float("inf")}, "retry_after_cap"),
    ({"timeout": 0}, "timeout"),
    ({"models": {"a": {"model": "gpt-4o", "timeout": 0}}}, "models.a.timeout"),
    ({"models": {"a": {"model": "gpt-4o", "context_window": 1000, "max_output_tokens": 2000}}},
     "models.a.max_output_tokens"),
    ({"routes": [{"model": "gpt-4o", "when": {"min_prompt_tokens": 500, "max_prompt_tokens": 100}}]}, "routes[0].when"),
    # params that would override what the turn decides (the window, the model, streaming)
    ({"models": {"a": {"model": "gpt-4o", "params": {"model": "openai/other"}}}}, "models.a.params.model"),
    ({"models": {"a": {"model": "gpt-4o", "params": {"messages": []}}}}, "models.a.params.messages"),
    ({"models": {"a": {"model": "gpt-4o", "params": {"stream": True}}}}, "models.a.params.stream"),
    ({"models": {"a": {"model": "gpt-4o", "params": {"max_retries": 5}}}}, "models.a.params.max_retries"),
    # a key that would be sent as written
    ({"models": {"a": {"model": "gpt-4o", "api_key": "os.environ/LOCAL_KEY"}}}, "models.a.api_key"),
    ({"models": {"a": {"model": "gpt-4o", "api_key": "${LOCAL_KEY}"}}}, "models.a.api_key"),
    ({"models": {"a": {"model": "gpt-4o", "api_key": "sk-abc\r"}}}, "models.a.api_key"),
])
def test_validation_errors_name_the_bad_key(raw, key):
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert str(e.value).startswith(key)


def test_an_env_reference_as_a_key_says_what_to_write():
    with pytest.raises(ConfigError, match='write api_key_env = "LOCAL_KEY"'):
        parse_config({"models": {"a": {"model": "gpt-4o", "api_key": "$LOCAL_KEY"}}})


def test_a_missing_api_key_env_is_not_replaced_by_the_providers_usual_key(tether_home, fake_server, monkeypatch):
    """litellm sends OPENAI_API_KEY to any openai/ model's api_base when no key is given: a
    model whose own key variable is unset would hand the user's OpenAI key to that host."""
    from tether import AllModelsFailed, Tether

    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-users-real-openai-key-0123456789")
    monkeypatch.delenv("LOCAL_KEY", raising=False)
    cfg = {"default_model": "local", "models": {"local": {"model": "openai/llama3", "api_base": fake_server.base,
                                                          "api_key_env": "LOCAL_KEY"}}}
    t = Tether(home=tether_home, config=cfg)
    with pytest.raises(AllModelsFailed, match="LOCAL_KEY is not set"):
        t.chat_once("hi")
    assert fake_server.calls() == []
    monkeypatch.setenv("LOCAL_KEY", "sk-local-key-with-a-crlf-line-end\r")
    assert t.chat_once("hi again").model == "local"
    assert fake_server.keys[-1] == "Bearer sk-local-key-with-a-crlf-line-end"


def test_an_api_base_with_no_key_of_its_own_never_gets_the_providers_key(tether_home, fake_server, monkeypatch):
    """[models.local] with an api_base and no api_key/api_key_env: litellm sent the user's
    OPENAI_API_KEY to that server. It gets a placeholder (local servers take any key), also
    for an api_base given to one call; params.base_url, the same hole, is refused."""
    from tether import Tether

    real = "sk-the-users-real-openai-key-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", real)
    local = {"model": "openai/llama3", "api_base": fake_server.base}
    t = Tether(home=tether_home, config={"default_model": "local", "models": {"local": local}})
    assert t.chat_once("hi").model == "local"
    with t.stream("and streamed") as st:
        "".join(st)
    assert t.chat_once("raw", model="openai/other", api_base=fake_server.base).model == "openai/other"
    assert fake_server.keys == ["Bearer no-key"] * 3
    with pytest.raises(ConfigError, match=r"models.local.params.base_url: not allowed here \(use `api_base`"):
        parse_config({"models": {"local": {"model": "openai/llama3", "params": {"base_url": fake_server.base}}}})


def test_bad_file_reported_not_raised_and_sessions_still_work(tether_home):
    tether_home.mkdir(parents=True)
    (tether_home / "config.toml").write_text('default_model = "fast"\n[models.fast]\nmodel = 3\n')
    rep = inspect_config(tether_home)
    assert rep.exists and not rep.valid and "models.fast.model" in rep.error and rep.default_model is None
    t = Tether()
    assert not t.config_report().valid
    sid = t.create_session("still works")
    assert [s.id for s in t.list_sessions()] == [sid]
    with pytest.raises(ConfigError, match="models.fast.model"):
        t.chat_once("hi", session_id=sid)


def test_broken_toml_names_the_file(tether_home):
    tether_home.mkdir(parents=True)
    (tether_home / "config.toml").write_text("default_model = \n")
    with pytest.raises(ConfigError, match="config.toml"):
        load_config(tether_home)


@pytest.mark.parametrize("body, match", [
    (b'default_model = "caf\xe9"\n', r"line 1 is not UTF-8 text \(byte 0xe9\)"),
    (b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),
    (b"[context]\nk1 = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),
    (b"retries = " + b"9" * 5000 + b"\n", r"a number has more than \d+ digits$"),
])
def test_an_unreadable_config_file_is_named_and_reported_as_invalid(tether_home, body, match):
    """A bare UnicodeDecodeError, RecursionError or int() digit-limit error escaped, naming no
    file, and `tether config` (which reports "valid: no") raised it instead."""
    from click.testing import CliRunner

    from tether.cli import main
    from tether.turn.settings import check_config

    tether_home.mkdir(parents=True)
    path = tether_home / "config.toml"
    path.write_bytes(body)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(tether_home)
    assert str(e.value).startswith(f"config file {path}: ")
    rep = inspect_config(tether_home, None, check_config)
    assert not rep.valid and rep.error == str(e.value)
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code == 1 and "valid:         no" in r.stdout and "Traceback" not in r.output
    assert r.stderr == f"tether: error: {e.value}\n"


def test_no_config_no_keys_means_echo_with_notice(tether_home):
    cfg = load_config(tether_home)
    assert cfg.default_model == ECHO_MODEL and cfg.source == "none"
    assert str(tether_home / "config.toml") in cfg.notice and "OPENAI_API_KEY" in cfg.notice  # the real path


def test_provider_key_in_env_picks_that_provider(tether_home, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "x")
    cfg = load_config(tether_home)
    assert cfg.default_model.startswith("anthropic/") and cfg.notice is None
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    assert load_config(tether_home).default_model == "gpt-4o-mini"


def test_config_path_argument_and_missing_path(tmp_path):
    p = tmp_path / "my.toml"
    p.write_text('default_model = "openai/x"\n')
    assert Tether(config=p).config.default_model == "openai/x"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path, tmp_path / "nope.toml")


def test_api_key_never_reaches_session_files(make_tether, tether_home, fake_server, monkeypatch):
    monkeypatch.setenv("LOCAL_KEY", "sk-env-SECRET-42")
    t = make_tether(models={"envkey": {"model": "openai/envkey", "api_base": fake_server.base,
                                       "api_key_env": "LOCAL_KEY"}})
    fake_server.always["main"] = "401"
    r = t.chat_once("hello")
    assert r.model == "backup"
    r2 = t.chat_once("again", model="envkey")
    assert r2.model == "envkey"
    blob = b"".join(p.read_bytes() for p in tether_home.rglob("*") if p.is_file())
    assert b"SECRET" not in blob
    assert "SECRET" not in repr(t.config.models["main"]) and "api_key" not in t.config.models["main"].public()


def test_import_and_session_ops_do_not_import_litellm(tmp_path):
    code = ("import sys, tether; t = tether.Tether(home=%r); sid = t.create_session('x'); "
            "t.add_message(sid, 'user', 'hi'); t.list_sessions(); t.config_report(); t.pin_model(sid, 'main'); "
            "print('litellm' in sys.modules)") % str(tmp_path)
    cfg = tmp_path / "config.toml"
    cfg.write_text('default_model = "main"\n[models.main]\nmodel = "openai/m"\n')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_home_that_is_a_file_is_named(tmp_path, monkeypatch):
    home = tmp_path / "afile"
    home.write_text("")
    monkeypatch.setenv("TETHER_HOME", str(home))
    with pytest.raises(ConfigError, match=f"tether home {home} is not a directory"):
        Tether()
    for h in (home, home / "sub"):  # the home, or a folder it needs, is a file
        rep = inspect_config(h)
        assert not rep.valid and f"{home} is a file" in rep.error


def test_a_key_of_no_known_shape_that_the_provider_repeats_is_hidden(make_tether, tether_home, fake_server):
    """Key shapes (sk-..., AIza...) are hidden by pattern; any other key the call used, by value."""
    t = make_tether(models={"odd": {"model": "openai/odd", "api_base": fake_server.base,
                                    "api_key": "tk_live_abcdef123456SECRET"}})
    fake_server.fail("odd", "401key")
    r = t.chat_once("hello", model="odd")
    assert r.model == "backup"
    failed = r.attempts[0]
    assert failed.kind == "auth" and "has expired" in failed.error and "SECRET" not in failed.error
    blob = b"".join(p.read_bytes() for p in tether_home.rglob("*") if p.is_file())
    assert b"has expired" in blob and b"SECRET" not in blob


@pytest.mark.parametrize("key", ["k3y2024", "LiteralKeyValue9f8e7d6c5b4a"])
def test_a_key_the_provider_repeats_glued_to_other_text_is_hidden_everywhere(make_tether, tether_home, fake_server,
                                                                              key):
    """Hiding only whole tokens of 8+ characters let "KEY-v2", "key_KEY_for" and a short
    llama.cpp --api-key through to the attempt, the session file, the export and the events."""
    t = make_tether(models={"odd": {"model": "openai/odd", "api_base": fake_server.base, "api_key": key}})
    events: list[str] = []
    t.on("fallback", lambda e: events.append(repr(e)))
    fake_server.fail("odd", "401glued")
    r = t.chat_once("hello", model="odd")
    assert r.model == "backup" and fake_server.keys[0] == f"Bearer {key}"
    failed = r.attempts[0]
    assert failed.kind == "auth" and "unknown credential" in failed.error and "_for_project" in failed.error
    blob = b"".join(p.read_bytes() for p in tether_home.rglob("*") if p.is_file()).decode()
    assert "unknown credential" in blob and events
    for text in (failed.error, repr(r), blob, t.export_session(r.session_id), *events):
        assert key not in text


def test_litellms_own_log_records_hide_the_key(make_tether, fake_server, caplog):
    """An app with DEBUG logging gets litellm's "Received openai error ... <provider text>"."""
    key = "EnvKeyValue0a1b2c3d4e5f6a7b"
    t = make_tether(models={"odd": {"model": "openai/odd", "api_base": fake_server.base, "api_key": key}})
    fake_server.fail("odd", "401key")
    with caplog.at_level("DEBUG", logger="LiteLLM"):
        assert t.chat_once("hello", model="odd").model == "backup"
    assert "has expired" in caplog.text  # litellm did log the provider's text
    assert key not in caplog.text
