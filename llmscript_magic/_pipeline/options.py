"""Every knob of one generation, declared once.

Each field of ``Options`` is declared with ``option(...)``: its default, its help
text, and whether it is a ``%config`` trait, a ``%%generate`` flag or both. The
notebook layer derives the traits, the flags, ``%%generate?`` and the merge of
the two from these declarations (as simonw/llm's per-model ``Options`` drive its
CLI), so adding an option is one edit here. Fields without ``option`` are
filled in by the notebook layer (data descriptions, history, ...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from ..providers import Message

if TYPE_CHECKING:
    from .._course.budget import Guard
    from .._sandbox.base import Value

META = "llmscript"


@dataclass(frozen=True)
class OptionInfo:
    """How one option shows up to the user; see ``option``."""

    help: str
    name: str = ""  # user-facing name when it differs from the field's ("memory")
    config: bool = True  # a trait: %config GenerateMagics.NAME = ...
    flag: bool = True  # a %%generate --NAME flag
    short: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None  # smallest allowed value, checked after the merge
    env: str | None = None  # the trait's default comes from this environment variable
    secret: bool = False  # never shown by %config or repr
    parse: Callable[[str], Any] | None = None  # the user writes text; this makes the value
    text: str = ""  # the trait's default as the user writes it (with ``parse``)
    repeat: bool = False  # the flag may be given several times (a list of values)
    const: str | None = None  # the flag may be given without a value (nargs="?")


def option(default: Any, help: str, **info: Any) -> Any:
    """A field of ``Options`` with its user-facing declaration."""
    meta = {META: OptionInfo(help=help, **info)}
    secret = info.get("secret", False)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def parse_memory(text: str) -> int:
    """'512m', '1g', '256' (MB) -> megabytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*", text.lower())
    if not m:
        raise ConfigurationError(f"--memory {text!r} is not a size: write e.g. 256m or 1g.")
    value, unit = float(m.group(1)), m.group(2) or "m"
    mb = int(value * {"k": 1 / 1024, "m": 1, "g": 1024}[unit])
    if mb < 32:
        raise ConfigurationError(f"--memory {text!r} is below 32m: the sandbox needs at least 32m.")
    return mb


def names(text: str) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c')."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def name_set(text: str) -> frozenset[str] | None:
    """A comma list as a set; '' = no restriction (None)."""
    return frozenset(names(text)) if text.strip() else None


SANDBOXES = ("docker", "local", "course", "none")
ISOLATIONS = ("auto", "gvisor", "container")


@dataclass
class Options:
    """Every knob of one generation; ``generate(spec, **overrides)`` takes these names."""

    # -- the model ------------------------------------------------------------------
    model: str = option("", "Model as provider:model or a bare model name (see %llmscript "
                        "models); '' = anthropic's default.", short="-m",
                        metavar="PROVIDER:MODEL")
    max_tokens: int = option(4096, "Upper bound on reply tokens.", low=1)
    temperature: float | None = option(None, "Sampling temperature; unset = the provider's "
                                       "default.")
    system: str = option("", "Extra instructions appended to the system prompt.")
    thinking: int = option(0, "Extended thinking budget in tokens (Anthropic models that "
                           "support it; at least 1024); 0 = off. Shown, never run.", low=0,
                           metavar="TOKENS")
    api_key: str | None = option(None, "API key; prefer the provider's environment variable "
                                 "(ANTHROPIC_API_KEY). Never shown or stored.", flag=False,
                                 secret=True)
    base_url: str = option("", "API base URL, e.g. a local OpenAI-compatible server "
                           "(http://127.0.0.1:11434/v1 for Ollama); '' = the provider's default "
                           "or its *_BASE_URL variable.", flag=False)
    request_timeout: float = option(120.0, "Seconds before a model request times out.",
                                    flag=False, low=0.1)
    max_retries: int = option(2, "Transport retries inside the provider's SDK.", flag=False,
                              low=0)
    # -- budgets and tutor mode (issue 27; see _course/) -------------------------------
    max_cost: float | None = option(None, "Refuse, before sending, a request whose worst case "
                                    "(input + max tokens + thinking, repairs included) could "
                                    "cost more than USD for this cell.", low=0, metavar="USD")
    tutor: bool = option(False, "Tutor mode: the model explains and leaves the key steps to "
                         "you (a skeleton with TODOs); a full solution is not inserted.")
    # -- validation and repair ------------------------------------------------------
    retries: int = option(2, "Repair attempts after a failed check (0 disables).", low=0)
    budget_tokens: int = option(0, "Stop repairing once this many tokens are used (0 = no "
                                "budget).", low=0)
    allow_imports: frozenset[str] | None = option(
        None, "Comma list: only these top-level modules may be imported ('' = any the image "
        "has).", parse=name_set, metavar="A,B")
    deny_imports: frozenset[str] | None = option(
        None, "Comma list of modules that may not be imported.", parse=name_set, metavar="A,B")
    strict: bool = option(False, "Risky calls (process spawning, sockets, eval, ...) fail "
                          "validation instead of warning.")
    check: str | None = option(None, "Python condition over the script's variables and files, "
                               "evaluated in the sandbox after the run, apart from the script.",
                               config=False, metavar="EXPR")
    tests: tuple[str, ...] = option(
        (), "Python expression testing the script's functions, e.g. \"fizzbuzz(15) == "
        "'FizzBuzz'\" (repeatable); judged after the run in a fresh sandbox process that "
        "loads the script's definitions, so unlike --check it runs the script's own code.",
        name="test", config=False, repeat=True, metavar="EXPR")
    # -- the sandbox -------------------------------------------------------------------
    run: bool = option(False, "Run the code in the sandbox after validation.")
    session: bool = option(False, "Run in this kernel's session: one sandbox process whose "
                           "variables and files stay for the next --session runs (a large "
                           "file is read once); `%llmscript session reset` ends it. Without "
                           "it every run starts fresh.", config=False)
    sandbox: str = option("docker", "Where --run runs code: docker (hardened container), "
                          "local (bubblewrap/subprocess: weaker), course (a JupyterHub "
                          "course's shared engine, via its service) or none.",
                          choices=SANDBOXES)
    isolation: str = option("auto", "Docker isolation: gvisor (runsc), container (runc) or "
                            "auto (gvisor where the engine has it).", choices=ISOLATIONS)
    image: str = option("", "Sandbox image; '' = the built-in llmscript-sandbox image.")
    strict_versions: bool = option(False, "Refuse to run when the sandbox's Python or a "
                                   "library the code imports differs from the kernel's in "
                                   "major or minor version (default: warn).")
    timeout: float = option(30.0, "Wall-clock seconds a sandbox run may take.", low=0.1)
    memory_mb: int = option(256, "Sandbox memory limit (RAM + swap), e.g. 256m or 1g.",
                            name="memory", parse=parse_memory, text="256m", metavar="SIZE")
    cpus: float = option(1.0, "CPU cores the sandbox may use.", low=0.01)
    outputs: tuple[str, ...] = option((), "Variables the script leaves, loaded back into the "
                                      "notebook after a successful run.", name="output",
                                      config=False, parse=names, metavar="VAR[,VAR]")
    # -- reproducibility ---------------------------------------------------------------
    cache: bool = option(True, "Reuse replies for unchanged requests from the disk cache.")
    refresh: bool = option(False, "Ask the model again and update the cache.", config=False)
    cache_dir: str = option("", "Reply cache folder; '' = ~/.cache/llmscript-magic.",
                            flag=False)
    replay: str = option("", "A notebook whose recorded generations answer instead of a model "
                         "(no key, no network); defaults to $LLMSCRIPT_REPLAY.",
                         env="LLMSCRIPT_REPLAY", const="", metavar="NOTEBOOK")
    audit_log: str = option("", "Append one JSON line per generation and run to this file "
                            "('' = off); defaults to $LLMSCRIPT_AUDIT_LOG.",
                            env="LLMSCRIPT_AUDIT_LOG", flag=False)
    # -- filled in by the notebook layer, not by the user ----------------------------------
    files: Mapping[str, bytes | os.PathLike[str]] = field(default_factory=dict, repr=False)
    history: tuple[Message, ...] = ()
    context: tuple[str, ...] = ()  # prompt blocks (data descriptions, input/output notes)
    sent: tuple[str, ...] = ()  # what the context blocks hold, one line each, for the UI
    inputs: tuple[Value, ...] = field(default=(), repr=False)  # variables bound in the script
    guard: Guard | None = field(default=None, repr=False)  # session/daily budgets (_course)


def declared(cls: type) -> list[tuple[str, OptionInfo, Any]]:
    """(field name, declaration, default) of every declared option of ``cls``, in order."""
    from dataclasses import MISSING, fields

    out = []
    for f in fields(cls):
        info = f.metadata.get(META)
        if info is None:
            continue
        factory: Any = f.default_factory
        default = f.default if f.default is not MISSING else factory()
        out.append((f.name, info, default))
    return out


__all__ = ["OptionInfo", "Options", "declared", "name_set", "names", "option", "parse_memory"]
