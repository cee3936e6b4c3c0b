"""Model and script text is inert: escaped HTML, safe Markdown, terminal-safe text."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from markdown_it import MarkdownIt
from markup_payloads import ESCAPES, MARKER, hostile_markdown
from test_cli import llmscript

from llmscript_magic._ui.inert import md_html, md_text, printable

BEACON = "http://127.0.0.1:9/beacon"
ALLOWED_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "a", "code", "pre", "em", "strong",
                "ul", "ol", "li", "blockquote", "hr", "br", "table", "thead", "tbody", "tr",
                "th", "td", "s", "div", "small", "i"}
ALLOWED_ATTRS = {"href", "title", "rel", "target", "start", "class"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(markup: str) -> _Tags:
    p = _Tags()
    p.feed(markup)
    p.close()
    return p


def assert_inert(markup: str) -> str:
    """No tag, attribute or link that could run, fetch or style; returns the visible text."""
    p = parsed(markup)
    for tag, attrs in p.tags:
        assert tag in ALLOWED_TAGS, (tag, markup)
        assert set(attrs) <= ALLOWED_ATTRS, (tag, attrs)
        assert attrs.get("class") in (None, "llmscript-explain"), attrs
        if "href" in attrs:
            assert str(attrs["href"]).startswith(("http://", "https://")), attrs
    return "".join(p.text)


def test_model_markdown_renders_to_inert_html_and_stays_readable() -> None:
    out = md_html(hostile_markdown(BEACON))
    text = assert_inert(out)
    assert f"{MARKER} explanation" in text
    assert "<script>window.__pwned=1" in text and "<style>body" in text  # shown, as text
    assert "<b>not bold</b>" in text
    assert "[a javascript link](javascript:" in text  # refused links stay as their source
    # the image is a link to its URL, not fetched; the autolink is http: kept as a link
    hrefs = [a.get("href") for tag, a in parsed(out).tags if tag == "a"]
    assert hrefs == [f"{BEACON}?markdown-image", f"{BEACON}?autolink"]
    assert "<img" not in out and "\x1b" not in out and "\u202e" not in out
    assert "\\x1b]52;c;" in text and "\\u202e" in text


def test_model_markdown_keeps_its_formatting() -> None:
    out = md_html("Use **`revenue`**, see [docs](https://pandas.pydata.org \"Pandas\").\n\n"
                  "```python\ndf['a'] < 1\n```\n\n| a | b |\n|--:|:-:|\n| 1 | 2 |\n")
    assert_inert(out)
    assert "<strong><code>revenue</code></strong>" in out
    assert ('<a href="https://pandas.pydata.org" title="Pandas" rel="noopener noreferrer '
            'nofollow" target="_blank">docs</a>') in out
    assert "<pre><code>df['a'] &lt; 1\n</code></pre>" in out
    assert "<td>1</td>" in out and "style" not in out


@pytest.mark.parametrize("renderer", ["commonmark", "default"])
def test_escaped_text_renders_literally_as_markdown(renderer: str) -> None:
    """What md_text makes renders as the very text, by a renderer with raw HTML on."""
    md = MarkdownIt(renderer, {"html": True})
    payload = hostile_markdown(BEACON) + "\n1. *x* _y_ ~~z~~ $a$ | t | \\ `c` www.x.org"
    out = md.render(md_text(payload))
    p = parsed(out)
    assert {tag for tag, _ in p.tags} <= {"p", "br"}, out
    shown = html.unescape("".join(p.text))
    assert re.sub(r"\s+", " ", shown).strip() == \
        re.sub(r"\s+", " ", printable(payload)).strip()


def test_terminal_text_spells_out_control_and_bidi_characters() -> None:
    out = printable(f"a\tb\r\nc {ESCAPES} \x9b31m \u2066x\u2069 \u200f")
    assert out == ("a\tb\nc \\x1b]52;c;cHduZWQ=\\x07\\x1b[2K\\r\\x08\\u202eevil\\u202c "
                   "\\x9b31m \\u2066x\\u2069 \\u200f")


def test_explain_shows_hostile_reply_inert(ip: InteractiveShell, fake: Any) -> None:
    first = ip.run_cell("x = 1", store_history=True).execution_count
    fake.enqueue(hostile_markdown(BEACON))
    ip.magics_manager.registry["GenerateMagics"].model = "fake:m"
    with capture_output() as shown:
        res = ip.run_cell(f"%llmscript explain {first}", store_history=True)
    assert res.success, res.error_in_exec
    data = shown.outputs[0].data
    assert set(data) == {"text/html", "text/plain"}
    assert MARKER in assert_inert(data["text/html"])
    assert "\x1b" not in data["text/plain"] and "\\x1b]52" in data["text/plain"]


def test_no_code_reply_and_result_markdown_are_inert(ip: InteractiveShell, fake: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    fake.enqueue(f"I will not write code. {ESCAPES} <img src=x onerror=alert(1)>")
    res = ip.run_cell("%%generate --model fake:m --retries 0\nPrint hi.", store_history=True)
    assert type(res.error_in_exec).__name__ == "UsageError"  # shown as one line
    shown = capsys.readouterr()
    assert "I will not write code" in shown.err and "\\x1b]52;c;" in shown.err
    for text in (shown.out, shown.err):  # the streamed reply, the result, the error
        assert "\x1b" not in text and "\u202e" not in text and "\r" not in text


def test_result_markdown_alternative_escapes_what_the_script_chose(
        ip: InteractiveShell, fake: Any) -> None:
    from llmscript_magic._pipeline.generate import Attempt, Generation
    from llmscript_magic._pipeline.spec import parse_spec
    from llmscript_magic._pipeline.validate import Check, ValidationReport
    from llmscript_magic._sandbox import OutputFile, RunResult
    from llmscript_magic._ui.rich import result_bundle
    from llmscript_magic.providers import Usage

    evil = f"<img src=x onerror=alert(1)>`[x](javascript:alert(1))`{ESCAPES}"
    run = RunResult(status="error", exit_code=1, stdout=evil, stderr="", duration=0.1,
                    backend="docker", reason=evil,
                    files=[OutputFile(name=f"a`<script>x</script>{ESCAPES}.csv", size=3,
                                      data=b"a,b")])
    report = ValidationReport([Check("check" + evil, "fail", evil, layer="check")])
    attempt = Attempt(evil, "print(1)\n", report, Usage(), "end_turn", run=run)
    gen = Generation(spec=parse_spec("s"), prompt=None, model=evil, attempts=[attempt])
    bundle = result_bundle(gen, note=evil)
    out = MarkdownIt("commonmark", {"html": True}).render(bundle["text/markdown"])
    p = parsed(out)
    assert {t for t, _ in p.tags} <= {"p", "strong", "em", "code", "pre", "ul", "li", "br"}
    assert all("href" not in a and "src" not in a for _, a in p.tags)
    assert "<img src=x" in html.unescape("".join(p.text))
    assert "\x1b" not in bundle["text/plain"] and "\u202e" not in bundle["text/plain"]
    card = parsed(bundle["text/html"].split("</style>", 1)[1])  # our card: styles of its own
    assert not {t for t, _ in card.tags} & {"script", "img", "style", "svg", "iframe"}
    assert not [k for _, a in card.tags for k in a if k.startswith("on") or k == "href"]
    assert "a`<script>x</script>" in "".join(card.text)


def test_llmscript_run_prints_names_and_sources_terminal_safe(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    osc = "\x1b]52;c;cHduZWQ=\x07\x1b[2K\u202eevil"
    nb.cells = [nbformat.v4.new_code_cell(f"x = '{osc}'\nprint(x)")]
    path = tmp_path / "report\u202egnp.ipynb"
    nbformat.write(nb, path)
    proc = llmscript("run", str(path))
    assert proc.returncode == 0, proc.stdout
    shown = proc.stdout + proc.stderr
    assert "\x1b" not in shown and "\u202e" not in shown and "\r" not in shown
    assert "report\\u202egnp.ipynb" in proc.stdout
    assert "x = '\\x1b]52;c;cHduZWQ=\\x07\\x1b[2K\\u202eevil'" in proc.stderr
