"""Reasoning traces and chat-template tokens that come with a reply's text.

Reasoning models write their thinking into the reply when a server passes it
through as text: ``<think>…</think>`` (DeepSeek-R1, Qwen3, QwQ), Kimi's
``◁think▷…◁/think▷``, ``<reasoning>``, gpt-oss's analysis channel, Open Thoughts'
``<|begin_of_thought|>``. Drafts in there are never the answer; this module says
where the trace is, so ``extract`` reads only what follows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Reasoning traces: a leading <think>…</think> (DeepSeek-R1, Qwen3, QwQ, distills), Kimi's
# ◁think▷…◁/think▷, <reasoning>, gpt-oss's analysis channel (harmony tokens, or the plain
# text "analysis…assistantfinal…" left when a server drops them), or only a closing tag
# when the server put the opening one in the prompt.
_TRACE_OPEN = re.compile(r"\A\s*(<(think|thinking|thought|reasoning)>|<\|begin_of_thought\|>"
                         r"|◁think▷|(?:<\|start\|>assistant)?<\|channel\|>analysis<\|message\|>"
                         r"|analysis(?=.*?assistantfinal))", re.S)
_HARMONY_FINAL = re.compile(r"(?:<\|end\|>)?\s*(?:<\|start\|>assistant)?\s*<\|channel\|>final"
                            r"(?:\s*<\|constrain\|>\w*)?\s*<\|message\|>")
_LONE_CLOSE = re.compile(r"(^[ \t]*(</(think|thinking)>|◁/think▷)"
                         r"|(?<![`'\"(\[])(</(think|thinking)>|◁/think▷)[ \t]*$)", re.M)
_TRACE_TAGS = re.compile(r"</?(think|thinking|thought|reasoning)>|<\|(begin|end)_of_thought\|>"
                         r"|◁/?think▷|<\|[a-z_]+\|>")
_ENDS_WITH_FENCE = re.compile(r"^ *(`{3,}|~{3,})\s*\Z", re.M)
# Special tokens that leak into text from local servers: Llama's code-interpreter call
# starts with <|python_tag|>; chat templates end with <|eot_id|>, <|im_end|> and such.
_LEAD_TOKEN = re.compile(r"\A\s*<\|python_tag\|>")
_TAIL_TOKENS = re.compile(
    r"(?:<\|(?:eom_id|eot_id|im_end|endoftext|end|return|call)\|>|</s>|\s)+\Z")


@dataclass(frozen=True)
class Trace:
    """Where a reasoning trace sat in the reply (1-based lines) and whether an answer follows.

    ``cut``: the trace never closed and stops mid-thought (the reply was cut off), so
    there is no answer and its drafts must not be used. ``marker`` names the trace's form.
    """

    first_line: int
    last_line: int
    answered: bool
    cut: bool = False
    marker: str = "<think>"


def strip_tokens(text: str) -> str:
    """Drop chat-template tokens a local server left in the text (never inside the code)."""
    text = _LEAD_TOKEN.sub(lambda m: m.group().replace("<|python_tag|>", ""), text, count=1)
    if "<" not in text[-40:]:
        return text
    cut = max(len(text) - 200, 0)  # end tokens sit at the very end: never scan the whole reply
    return text[:cut] + _TAIL_TOKENS.sub("\n", text[cut:], count=1)


def _trace_end(text: str, m: re.Match[str]) -> tuple[int, int, str]:
    """(start, end) of the closing marker of the trace opened by ``m`` (-1s: none); its name."""
    opened = m.group(1)
    if opened.startswith("<|begin"):
        close, name = "<|end_of_thought|>", "<|begin_of_thought|>"
    elif opened == "◁think▷":
        close, name = "◁/think▷", opened
    elif opened.startswith("<|"):
        final = _HARMONY_FINAL.search(text, m.end())
        return (final.start(), final.end(), "analysis channel") if final else (-1, -1,
                                                                              "analysis channel")
    elif opened == "analysis":
        close, name = "assistantfinal", "analysis…assistantfinal"
    else:
        close, name = f"</{m.group(2)}>", opened
    end = text.find(close, m.end())
    return (end, end + len(close), name) if end >= 0 else (-1, -1, name)


def split_trace(text: str) -> tuple[str, Trace | None]:
    """Blank out a leading reasoning trace; keep it only when no answer follows it.

    Reasoning models write drafts in the trace (often longer than the answer, or
    "the full code"); the answer after it is what the user asked for. The trace
    is replaced by empty lines so line numbers in notes still match the reply.
    A trace that never closes is read only when it ends on a finished code block;
    one that stops mid-thought was cut off and is marked ``cut``.
    """
    m = _TRACE_OPEN.match(text)
    if m:
        end, stop, name = _trace_end(text, m)
        start = m.start(1)
        if end < 0:
            stop = len(text)
    else:
        lone = _LONE_CLOSE.search(text) if ("</think" in text or "◁/think▷" in text) else None
        if lone is None or re.search(r"<(think|thinking)>|◁think▷", text[:lone.start()]):
            return text, None
        start, stop, end, name = 0, lone.end(), lone.start(), lone.group().strip()
    first = text.count("\n", 0, start) + 1
    last = first + text.count("\n", start, stop)
    if text[stop:].strip():
        return text[:start] + "\n" * (last - first) + text[stop:], Trace(first, last, True,
                                                                         marker=name)
    inner = _TRACE_TAGS.sub("", text[start:stop])
    cut = end < 0 and not _ENDS_WITH_FENCE.search(inner.rstrip())
    # nothing else to go on: read the trace itself, without its tags
    return text[:start] + inner, Trace(first, last, False, cut, name)
