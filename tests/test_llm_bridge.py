"""The llm bridge through simonw/llm's real plugin machinery, never a mock of it.

Two real plugins answer: ``llm-echo`` (llm's debug plugin, installed from the package
index), and llm's own OpenAI plugin with a model declared in ``extra-openai-models.yaml``
pointing at the loopback OpenAI stand-in, so a streamed reply travels llm's real plugin
path into extraction, validation, the sandbox, the record and replay. Every test gets
its own llm user folder (``LLM_USER_PATH``): keys, aliases and extra models of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from standins import TEST_OPENAI_KEY, OpenAIStandIn, closed_port
from test_widgets import updates, wv  # noqa: F401  (wv: the widget view fixture)

pytest.importorskip("llm_echo", reason="llm-echo, the bridge's test plugin, needs Python 3.11+")

from llmscript_magic import generate
from llmscript_magic._errors import ConfigurationError, MissingKeyError, UnknownModelError
from llmscript_magic.providers import Message, Provider, Reply, Request, register, unregister

ROOT = Path(__file__).resolve().parent.parent
CODE = "print(2 + 3)\n"
REPLY = f"Here it is.\n\n```python\n{CODE}```\n"
ECHO_THINKING = "First I consider the prompt, then I decide what to say."  # llm-echo's


@pytest.fixture(autouse=True)
def _free_what_llm_leaves_open() -> Iterator[None]:
    """llm's OpenAI plugin builds an SDK client per request and never closes it; free those
    here, so their ResourceWarnings (llm's, hidden by Python by default) do not surface in
    whatever test the cycle collector happens to run in next."""
    yield
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def llm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """llm's user folder for this test only (keys.json, aliases.json, extra models)."""
    home = tmp_path / "llm-home"
    home.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(home))
    monkeypatch.delenv("LLM_ECHO_NEEDS_KEY_KEY", raising=False)
    return home


@pytest.fixture
def bridge(llm_home: Path) -> Iterator[type[Provider]]:
    """The bridge registered as the tests register providers (the entry point is pyproject's)."""
    from llmscript_magic.providers.llm_bridge import LLMProvider

    register(LLMProvider)
    yield LLMProvider
    unregister(LLMProvider.name)


def _declare(home: Path, standin: OpenAIStandIn, model_id: str = "standin-chat") -> None:
    """An OpenAI-compatible model in llm's own extra-openai-models.yaml, keyed in keys.json."""
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: {model_id}\n"
        f"  model_name: gpt-standin\n"
        f"  api_base: {standin.url}\n"
        f"  api_key_name: standin\n"
        f"  aliases: [sc]\n")
    (home / "keys.json").write_text(json.dumps({"standin": TEST_OPENAI_KEY}))


def _request(text: str = "hello there", **kw: Any) -> Request:
    return Request(kw.pop("model", "echo"), "SYSTEM PROMPT", (Message("user", text),), **kw)


# -- llm-echo: the plugin path itself ------------------------------------------------
def test_echo_streams_what_the_bridge_sent_with_llms_usage(bridge: type[Provider]) -> None:
    reply = Reply()
    chunks = list(bridge().stream(_request(), reply))
    sent = json.loads(reply.text)  # llm-echo answers with the prompt it was given
    assert sent["prompt"] == "hello there" and sent["system"] == "SYSTEM PROMPT"
    assert sent["stream"] is True
    assert "".join(chunks) == reply.text
    # llm-echo reports usage as word counts; the bridge takes them from response.usage()
    assert reply.usage.input_tokens == len(["hello", "there", "SYSTEM", "PROMPT"])
    assert reply.usage.output_tokens == len(reply.text.split())
    assert reply.model == "echo" and reply.notes == [] and reply.thinking == ""


def test_thinking_maps_to_the_models_option_and_stays_apart(bridge: type[Provider]) -> None:
    reply = Reply()
    chunks = list(bridge().stream(_request(thinking_tokens=2048), reply))
    assert reply.thinking == ECHO_THINKING  # llm-echo's reasoning events, on its option
    assert ECHO_THINKING not in reply.text and ECHO_THINKING not in "".join(chunks)
    assert "" in chunks  # the progress signal the widget shows the reasoning on


def test_options_the_model_lacks_are_warnings_not_failures(bridge: type[Provider],
                                                           llm_home: Path) -> None:
    gen = generate("Print hello.", model="llm:echo", temperature=0.3, cache=False)
    warnings = [c.message for c in gen.report.warnings if c.layer == "model"]
    assert warnings == ["--temperature was not sent: llm:echo takes no temperature option."]
    assert gen.model == "llm:echo" and gen.usage.output_tokens > 0


def test_thinking_on_a_model_without_it_says_it_is_anthropics(
        bridge: type[Provider], openai_standin: OpenAIStandIn, llm_home: Path) -> None:
    _declare(llm_home, openai_standin)
    openai_standin.enqueue(REPLY)
    gen = generate("Print 5.", model="llm:standin-chat", thinking=2048, cache=False)
    assert gen.ok and gen.code == CODE  # the generation goes on
    assert [c.message for c in gen.report.warnings if c.layer == "model"] == [
        "--thinking was ignored: extended thinking is an Anthropic feature and "
        "llm:standin-chat has no thinking option (use an anthropic: model for it)."]


def test_notebook_data_says_once_that_prompt_caching_is_anthropics(
        bridge: type[Provider]) -> None:
    from llmscript_magic.providers import llm_bridge

    llm_bridge._told_cache.discard("echo")  # once per process: this test is the first time
    data = Message("user", "DATA: df has 3 rows\n\nTask: print it", cache_prefix=20)
    notes = []
    for _ in range(2):  # two generations (a provider each) over the same data
        reply = Reply()
        list(bridge().stream(Request("echo", "S", (data,)), reply))
        notes += reply.notes
    assert notes == ["Prompt caching is Anthropic-only: llm:echo is sent the notebook data "
                     "in full with every request."]


def test_llms_aliases_and_aliases_json_name_the_same_model(bridge: type[Provider],
                                                            llm_home: Path) -> None:
    (llm_home / "aliases.json").write_text(json.dumps({"parrot": "echo"}))
    reply = Reply()
    list(bridge().stream(_request(model="parrot"), reply))
    assert reply.model == "echo" and json.loads(reply.text)["prompt"] == "hello there"


def test_an_unknown_model_names_the_installed_plugins(bridge: type[Provider]) -> None:
    with pytest.raises(UnknownModelError) as info:
        list(bridge().stream(_request(model="gemini-9-ultra"), Reply()))
    assert str(info.value).startswith(
        "No llm plugin offers a model 'gemini-9-ultra' (installed llm plugins: llm-echo): "
        "pick one from %llmscript models")


def test_keys_come_from_llms_store_or_its_variable(bridge: type[Provider], llm_home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingKeyError) as info:
        list(bridge().stream(_request(model="echo-needs-key"), Reply()))
    assert str(info.value) == (
        "No API key for llm:echo-needs-key: run `llm keys set echo-needs-key` or set "
        "LLM_ECHO_NEEDS_KEY_KEY, or use --replay to run recorded generations.")

    (llm_home / "keys.json").write_text(json.dumps({"echo-needs-key": "stored-key-1"}))
    reply = Reply()
    list(bridge().stream(_request(model="echo-needs-key"), reply))
    assert json.loads(reply.text)["key"] == "stored-key-1"  # llm-echo shows what it was given

    (llm_home / "keys.json").unlink()
    monkeypatch.setenv("LLM_ECHO_NEEDS_KEY_KEY", "env-key-2")
    reply = Reply()
    list(bridge().stream(_request(model="echo-needs-key"), reply))
    assert json.loads(reply.text)["key"] == "env-key-2"


# -- the provider list and policy ------------------------------------------------------
def test_models_are_listed_by_plugin(bridge: type[Provider], ip: Any,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("llmscript", "models")
    listed = capsys.readouterr().out
    assert ("llm  (keys from llm: `llm keys set NAME` or the plugin's variable)  default: "
            in listed)
    assert "    llm-echo:\n        llm:echo\n        llm:echo-needs-key\n" in listed
    assert "    llm (built in):\n        llm:gpt-4o\n" in listed


def test_policy_and_aliases_apply_to_bridged_models(bridge: type[Provider], ip: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("config", "GenerateMagics.aliases = {'cheap': 'llm:echo'}")
    ip.run_line_magic("config", "GenerateMagics.allowed_providers = 'llm'")
    result = ip.run_cell("%%generate --model cheap --no-cache\nPrint hello.")
    shown = capsys.readouterr()  # llm-echo answers with JSON, not code: reached, no code
    assert "Generating with llm:echo" in shown.out and "Traceback" not in shown.out + shown.err
    assert str(result.error_in_exec).startswith("The model replied without code")

    ip.run_line_magic("config", "GenerateMagics.allowed_providers = 'anthropic'")
    result = ip.run_cell("%%generate --model cheap\nPrint hello.")
    assert isinstance(result.error_in_exec, Exception)
    assert str(result.error_in_exec) == (
        "Provider 'llm' is not allowed here (GenerateMagics.allowed_providers = anthropic): "
        "use --model with one of those")

    ip.run_line_magic("config", "GenerateMagics.allowed_providers = ''")
    ip.run_line_magic("config", "GenerateMagics.blocked_providers = 'llm'")
    result = ip.run_cell("%%generate --model llm:echo\nPrint hello.")
    assert str(result.error_in_exec).startswith("Provider 'llm' is blocked here")


def test_cost_is_unknown_without_a_price(bridge: type[Provider], ip: Any,
                                         openai_standin: OpenAIStandIn, llm_home: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _declare(llm_home, openai_standin)
    openai_standin.enqueue(REPLY, usage={"prompt_tokens": 120, "completion_tokens": 30})
    ip.run_cell_magic("generate", "--model llm:standin-chat --no-cache", "Print 2 + 3.")
    assert "llm:standin-chat · 120 in / 30 out tokens · est. n/a" in capsys.readouterr().out
    ip.run_line_magic("llmscript", "usage")
    row = next(line for line in capsys.readouterr().out.splitlines() if "llm:standin" in line)
    fields = row.split()
    at = fields.index("llm:standin-chat")
    assert fields[at + 1:at + 4] == ["120", "30", "n/a"]


def test_the_entry_point_and_the_extra_are_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["llmscript_magic.providers"]["llm"]
    assert target == "llmscript_magic.providers.llm_bridge:LLMProvider"
    module, _, attr = target.partition(":")
    cls = getattr(__import__(module, fromlist=[attr]), attr)
    assert issubclass(cls, Provider) and cls.name == "llm"
    assert any(dep.startswith("llm>=") for dep in project["optional-dependencies"]["llm"])
    assert {"llm", "llm-echo"} <= {d.split(">")[0].split("=")[0].strip()
                                   for d in project["optional-dependencies"]["test-fast"]}


# -- llm's OpenAI plugin against the stand-in ------------------------------------------
def test_a_declared_openai_compatible_model_streams_through_llm(
        bridge: type[Provider], openai_standin: OpenAIStandIn, llm_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _declare(llm_home, openai_standin)
    monkeypatch.delenv("OPENAI_API_KEY")  # the key comes from llm's keys.json only
    openai_standin.enqueue(REPLY, chunk_size=5, usage={"prompt_tokens": 123,
                                                       "completion_tokens": 45})
    chunks: list[str] = []
    audit = llm_home.parent / "audit.jsonl"
    gen = generate("Print 2 + 3.", model="llm:sc", temperature=0.2, max_tokens=300,
                   on_chunk=chunks.append, cache=False, audit_log=str(audit))
    assert gen.ok and gen.code == CODE
    assert len(chunks) > 5 and "".join(chunks) == REPLY  # streamed, chunk by chunk
    assert (gen.usage.input_tokens, gen.usage.output_tokens) == (123, 45)
    assert gen.last.stop_reason == "stop"
    body = openai_standin.last.body
    assert body["model"] == "gpt-standin" and body["stream"] is True
    assert (body["temperature"], body["max_tokens"]) == (0.2, 300)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"].endswith("Print 2 + 3.")
    assert openai_standin.last.sent_key(TEST_OPENAI_KEY)
    assert TEST_OPENAI_KEY not in json.dumps(gen.record())
    assert "llm:sc" in audit.read_text() and TEST_OPENAI_KEY not in audit.read_text()
    assert not (llm_home / "logs.db").exists()  # llm's own prompt log is its CLI's, not ours


def test_the_reply_streams_into_the_widget(bridge: type[Provider], ip: Any,
                                          wv: dict[str, Any],  # noqa: F811
                                          openai_standin: OpenAIStandIn, llm_home: Path) -> None:
    _declare(llm_home, openai_standin)
    reply = REPLY + "It prints five. " * 40
    openai_standin.enqueue(reply, chunk_size=2, chunk_delay=0.002)
    assert ip.run_cell("%%generate --model llm:standin-chat --no-insert\nPrint 2 + 3.").success
    view = wv["view"]
    streamed = updates(view.stream, "value")
    assert len(streamed) >= 2 and "It prints five." in streamed[-1]  # live, then whole
    assert any("llm:standin-chat" in s for s in updates(view.status, "value"))
    assert openai_standin.last.body["stream"] is True


def test_cancelling_hangs_up_the_plugins_http_stream(
        bridge: type[Provider], openai_standin: OpenAIStandIn, llm_home: Path) -> None:
    _declare(llm_home, openai_standin)
    openai_standin.enqueue(CODE * 40, chunk_size=4, chunk_delay=0.05)
    gen = bridge().stream(_request(model="standin-chat"), Reply())
    assert next(gen) and next(gen)
    gen.close()  # what Stop does
    assert openai_standin.disconnected.wait(3)


def test_repair_sends_the_earlier_turns_as_llm_messages(
        bridge: type[Provider], openai_standin: OpenAIStandIn, llm_home: Path) -> None:
    _declare(llm_home, openai_standin)
    openai_standin.enqueue("```python\nprint(2 +\n```")
    openai_standin.enqueue(REPLY)
    gen = generate("Print 2 + 3.", model="llm:standin-chat", cache=False)
    assert gen.ok and len(gen.attempts) == 2
    roles = [m["role"] for m in openai_standin.last.body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


def test_a_rejected_key_and_a_dead_server_are_one_line_without_the_key(
        bridge: type[Provider], openai_standin: OpenAIStandIn, llm_home: Path) -> None:
    _declare(llm_home, openai_standin)
    openai_standin.enqueue(status=401, message=f"Incorrect API key provided: {TEST_OPENAI_KEY}")
    with pytest.raises(Exception) as info:
        generate("Print 5.", model="llm:standin-chat", cache=False, max_retries=0)
    said = str(info.value)
    assert "\n" not in said and TEST_OPENAI_KEY not in said
    assert said.startswith("llm:standin-chat (llm (built in)) rejected the key (401)")

    openai_standin.stop()
    with pytest.raises(Exception) as info:
        generate("Print 5.", model="llm:standin-chat", cache=False)
    said = str(info.value)
    assert said.startswith("Could not reach llm:standin-chat") and "\n" not in said


def test_options_the_model_refuses_are_one_line(bridge: type[Provider],
                                                openai_standin: OpenAIStandIn,
                                                llm_home: Path) -> None:
    _declare(llm_home, openai_standin)
    with pytest.raises(ConfigurationError) as info:
        generate("Print 5.", model="llm:standin-chat", temperature=7.0, cache=False)
    assert str(info.value).startswith("llm:standin-chat (llm (built in)) refused the request")
    assert "\n" not in str(info.value) and openai_standin.request_count == 0


# -- out of process: entry point, doctor, broken plugins, record and replay -------------
BROKEN_LLM_PLUGINS = {
    "llm_plugin_broken.py": "raise RuntimeError('needs ~/.broken.toml')\n",
    "llm_plugin_crashy.py": ("import llm\n\n@llm.hookimpl\ndef register_models(register):\n"
                             "    raise ValueError('no models today')\n"),
}


def _dist(where: Path, name: str, entry_points: str) -> None:
    info = where / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def installed(tmp_path: Path, llm_home: Path) -> dict[str, str]:
    """The environment of a process in which the bridge is an installed entry point.

    The shared venv's metadata is the main checkout's, so the entry point pyproject declares
    is installed here as a distribution of its own on PYTHONPATH (as pip would install it).
    """
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "llmscript-bridge-ep", "[llmscript_magic.providers]\n"
          "llm = llmscript_magic.providers.llm_bridge:LLMProvider\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site), env.get("PYTHONPATH", "")])
    env["LLM_USER_PATH"] = str(llm_home)
    env["LLMSCRIPT_CACHE_DIR"] = str(tmp_path / "cache")
    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{closed_port()}"
    env["SITE"] = str(site)
    return env


def test_doctor_and_models_list_plugins_and_the_ones_that_fail(
        installed: dict[str, str]) -> None:
    site = Path(installed["SITE"])
    for name, code in BROKEN_LLM_PLUGINS.items():
        (site / name).write_text(code)
    _dist(site, "llm-broken", "[llm]\nbroken = llm_plugin_broken\n")
    _dist(site, "llm-crashy", "[llm]\ncrashy = llm_plugin_crashy\n")
    code = ("from llmscript_magic._ui.reports import list_models_text\n"
            "print(list_models_text())\n"
            "from llmscript_magic import generate\n"
            "print('STILL WORKS', generate('Print hi.', model='llm:echo', cache=False).model)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=installed, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "    llm-echo:\n        llm:echo\n" in out
    assert ("    llm-broken  (FAILED to load: RuntimeError: needs ~/.broken.toml): upgrade, "
            "reinstall or uninstall llm-broken") in out
    assert ("    llm-crashy  (FAILED to load: ValueError: no models today): upgrade, "
            "reinstall or uninstall llm-crashy") in out
    assert "STILL WORKS llm:echo" in out

    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "doctor"],
                          env=installed, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "! llm plugins (--model llm:MODEL):\n" in proc.stdout
    assert "    llm-echo: echo, echo-needs-key\n" in proc.stdout
    assert ("    llm-broken: failed to load (RuntimeError: needs ~/.broken.toml): upgrade, "
            "reinstall or uninstall llm-broken\n") in proc.stdout
    assert "providers: anthropic, course, llm, openai" in proc.stdout


def test_load_ext_does_not_import_llm(installed: dict[str, str]) -> None:
    code = ("import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance().run_line_magic('load_ext', 'llmscript_magic')\n"
            "print('llm' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=installed, capture_output=True,
                          text=True, timeout=60, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "False"


def _notebook(spec: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext llmscript_magic\n"
                                          "%config GenerateMagics.widgets = False"),
                nbformat.v4.new_code_cell(f"%%generate --model llm:standin-chat --run\n{spec}")]
    return nb


def _texts(cell: Any) -> str:
    return "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                   for o in cell.outputs)


def _stdout(cell: Any) -> str:
    """The sandbox run's stdout as the text output shows it."""
    text = _texts(cell)
    return text.split("--- stdout ---\n")[1].split("\n---")[0].strip() if (
        "--- stdout ---" in text) else ""


@pytest.mark.docker
def test_a_bridged_model_generates_runs_records_and_replays_without_a_key(
        tmp_path: Path, installed: dict[str, str], llm_home: Path,
        openai_standin: OpenAIStandIn, docker_client: Any) -> None:
    _declare(llm_home, openai_standin)
    openai_standin.enqueue(REPLY, chunk_size=4)
    source, recorded, replayed = (tmp_path / n for n in ("nb.ipynb", "rec.ipynb", "rep.ipynb"))
    nbformat.write(_notebook("Print 2 + 3."), source)

    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "run", str(source),
                           "-o", str(recorded)], env=installed, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert openai_standin.request_count == 1 and openai_standin.last.body["stream"] is True
    cell = nbformat.read(recorded, as_version=4).cells[1]
    record = next(o["metadata"]["llmscript"]["record"] for o in cell.outputs
                  if "llmscript" in o.get("metadata", {}))
    assert record["model"] == "llm:standin-chat" and record["code"] == CODE
    assert _stdout(cell) == "5"  # run in the real sandbox
    assert TEST_OPENAI_KEY not in recorded.read_text()

    # no key, no llm settings, nothing listening: the recording answers
    openai_standin.stop()
    bare = {**installed, "LLM_USER_PATH": str(tmp_path / "empty-llm-home"),
            "LLMSCRIPT_CACHE_DIR": str(tmp_path / "fresh-cache")}
    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "run",
                           str(recorded), "--replay", "-o", str(replayed)], env=bare,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    cell = nbformat.read(replayed, as_version=4).cells[1]
    assert "from replay" in _texts(cell) and _stdout(cell) == "5"
