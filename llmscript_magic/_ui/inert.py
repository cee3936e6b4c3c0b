"""Model and sandbox text made inert for every renderer: HTML, Markdown and terminals.

Whatever the model wrote (an explanation, a reply without code) or a script printed
can be steered by the data that went into the prompt. A trusted notebook's
``text/markdown`` and ``text/html`` outputs are rendered unsanitized by JupyterLab and
by ``nbconvert --to html``, so raw HTML in them (``<script>``, ``<img onerror>``, a
``<style>`` for the whole page, a ``javascript:`` link) would run. A terminal obeys
escape sequences (a clipboard write through OSC 52, a line erased by ``\\r`` or a
cursor move) and shows bidi overrides as reordered text.

So the model's Markdown is rendered here, once, to HTML with every raw HTML tag
escaped, links limited to absolute http(s) URLs, images shown as links (an image
would fetch its URL when shown), and no attribute that styles or names classes;
text that goes into our own Markdown is backslash-escaped so that it reads as
text; and text for a terminal has its control and bidi characters spelled out.
"""

from __future__ import annotations

import html
import re
from typing import Any

SAFE_SCHEMES = ("http://", "https://")
_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&$:\"'=^@%;,?/])")
# C0 (but tab and newline), DEL, C1, and the bidi marks, embeddings, overrides and isolates
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                      "\u2066-\u2069]")


def printable(text: str) -> str:
    r"""``text`` for a terminal: control and bidi characters spelled out (``\x1b``, ``\u202e``).

    Newlines and tabs stay; a CRLF line end becomes a newline, a lone ``\r`` (which
    would let later text overwrite a line) is shown as ``\r``.
    """
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub(lambda m: _spelled(m.group()), text)


def _spelled(ch: str) -> str:
    if ch == "\r":
        return "\\r"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def md_text(text: str) -> str:
    """``text`` as Markdown that renders literally: no tag, link, emphasis or code span.

    CommonMark (and marked, JupyterLab's renderer) lets every ASCII punctuation
    character be backslash-escaped; escaping them all leaves nothing to interpret.
    Control characters are spelled out as for a terminal.
    """
    return _MD_PUNCT.sub(r"\\\1", printable(text))


def safe_url(url: str) -> bool:
    """Only absolute http(s) links: no ``javascript:``, ``data:``, ``file:`` or relative paths."""
    return url.strip().lower().startswith(SAFE_SCHEMES)


def _markdown() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = safe_url  # type: ignore[method-assign]  # refused: shown as text
    return md


def _inert_tokens(tokens: list[Any]) -> None:
    """Drop what could style or fetch: table alignment styles, code classes, images."""
    for tok in tokens:
        if tok.children:
            _inert_tokens(tok.children)
        if tok.type == "fence":
            tok.info = ""  # the language would become a class name the model chose
        if tok.type == "image":  # shown as a link to its URL: nothing is fetched on render
            tok.type, tok.tag, tok.nesting = "link_open", "a", 1
            tok.attrs = {"href": tok.attrs.get("src", "")}
            alt = html.escape(tok.content or str(tok.attrs["href"]))
            tok.children = None
            tok.meta = {"alt": alt}
        if tok.attrs:
            tok.attrs = {k: v for k, v in tok.attrs.items() if k in ("href", "title", "start")}
        if tok.type == "link_open":
            tok.attrs["rel"] = "noopener noreferrer nofollow"
            tok.attrs["target"] = "_blank"


def md_html(text: str) -> str:
    """The model's Markdown as inert HTML (see the module docstring)."""
    md = _markdown()
    env: dict[str, Any] = {}
    tokens = md.parse(printable(text), env)
    _inert_tokens(tokens)
    def link_open(renderer: Any, toks: list[Any], idx: int, options: Any, env_: Any) -> str:
        tok = toks[idx]
        alt = (tok.meta or {}).get("alt")
        opened = renderer.renderToken(toks, idx, options, env_)
        return opened if alt is None else f"{opened}{alt}</a>"

    md.add_render_rule("link_open", link_open)
    return md.renderer.render(tokens, md.options, env)


__all__ = ["md_html", "md_text", "printable", "safe_url"]
