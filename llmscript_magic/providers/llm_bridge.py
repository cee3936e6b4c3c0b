"""The ``llm`` provider: every model an installed simonw/llm plugin offers, as ``llm:MODEL``.

Gemini, Bedrock, Mistral, GitHub Models, Ollama, local GGUF files...: llm has a plugin for
each and its own key store, so one bridge reaches them all instead of one provider per
vendor. ``--model llm:gemini-2.5-pro`` (or any llm alias: ``llm:4o``) asks that plugin's
model; the reply streams chunk by chunk like the built-in providers'.

- Keys come from llm: ``llm keys set NAME`` (its keys.json) or the plugin's environment
  variable. They are passed to the plugin by llm, never put in a request we record, and
  blanked out of any message.
- Options: ``--max-tokens``, ``--temperature`` and ``--thinking`` go to the model's own
  options of those names (``max_tokens``/``max_output_tokens``, ``temperature``,
  ``thinking_budget``/``thinking``) when it has them; when it has not, the reply carries a
  note the user sees as a warning, and the generation goes on.
- Prompt caching is Anthropic's: through llm the notebook data is sent in full each time,
  which a note says once per model and process.
- Usage comes from llm's ``response.usage()`` where the plugin reports it; no price is
  known for these models, so their cost shows as n/a unless the price table has one.

``llm`` is an optional dependency (``pip install 'llmscript-magic[llm]'``): without it
this module does not import and the registry lists the provider as not installed.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Generator
from typing import Any, get_args

from .._errors import (
    AuthenticationError,
    ConfigurationError,
    LLMScriptError,
    MissingKeyError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from .base import ModelGroup, Provider, Reply, Request, Usage, one_line

if importlib.util.find_spec("llm") is None:
    # the registry reports this as "optional, not installed" (see openai.py)
    raise ModuleNotFoundError(
        "The llm package is not installed: pip install 'llmscript-magic[llm]'.", name="llm")

#: option names plugins use for the reply's token limit, most common first
MAX_TOKEN_OPTIONS = ("max_tokens", "max_output_tokens", "max_completion_tokens")

_told_lock = threading.Lock()
_told_cache: set[str] = set()  # models already told about prompt caching in this process


class _LLMDefault:
    """``llm:`` alone means llm's own default model (``llm models default``)."""

    def __get__(self, obj: object, owner: type | None = None) -> str:
        try:
            import llm

            return str(llm.get_default_model())
        except Exception:  # an unreadable default_model.txt: llm itself would say so
            return ""


class LLMProvider(Provider):
    """Bridges to simonw/llm: its installed plugins' models, its key store."""

    name = "llm"
    key_env_var = None  # llm's key store, per plugin: see _key()
    key_source = "keys from llm: `llm keys set NAME` or the plugin's variable"
    default_model = _LLMDefault()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys: tuple[str, ...] = ()

    @classmethod
    def list_models(cls) -> tuple[str, ...]:
        return tuple(m for group in cls.model_groups() for m in group.models)

    @classmethod
    def model_groups(cls) -> tuple[ModelGroup, ...]:
        from .llm_plugins import groups

        return groups()

    def secrets(self) -> tuple[str, ...]:
        return (*super().secrets(), *self._keys)

    def stream(self, request: Request, reply: Reply) -> Generator[str, None, None]:
        """Prompt the plugin's model with the whole conversation and relay its stream.

        Text events are the reply; reasoning events go to ``reply.thinking``, never into
        the text. Usage, stop reason and the model that answered are read at the end.
        """
        from .llm_plugins import find

        bridged = find(request.model)  # UnknownModelError names the installed plugins
        model = bridged.model
        who = f"llm:{bridged.model_id} ({bridged.plugin})"
        self._key(model, bridged.model_id)  # MissingKeyError before any request
        options, notes = _options(model, bridged.model_id, request)
        reply.notes.extend(notes)
        response = self._prompt(model, request, options, who)
        events = response.stream_events()
        parts: list[str] = []
        reply.thinking = ""
        cancelled = False
        try:
            for event in events:
                if event.type == "text" and event.chunk:
                    parts.append(event.chunk)
                    yield event.chunk
                elif event.type == "reasoning" and event.chunk:
                    reply.thinking += event.chunk
                    yield ""  # progress: the caller shows reply.thinking as it grows
            usage = response.usage()
            reply.usage = Usage(input_tokens=usage.input or 0, output_tokens=usage.output or 0)
            reply.stop_reason = _stop_reason(response.response_json)
            reply.model = getattr(response, "resolved_model", None) or bridged.model_id
        except GeneratorExit:  # Stop: close() on this generator
            cancelled = True
            raise
        except LLMScriptError:
            raise
        except Exception as err:
            raise self._error(err, who, bool(parts)) from err
        finally:
            reply.text = "".join(parts)
            events.close()  # on cancel: closes the plugin's generator
            if cancelled:
                _hang_up()

    def _key(self, model: Any, model_id: str) -> None:
        """The plugin's key from llm's store or its variable, remembered only to blank it."""
        import llm

        if model.needs_key is None:
            return
        try:
            key = model.get_key()
        except llm.NeedsKeyException:
            env = f" or set {model.key_env_var}" if model.key_env_var else ""
            raise MissingKeyError(
                f"No API key for llm:{model_id}: run `llm keys set {model.needs_key}`{env}, or "
                f"use --replay to run recorded generations.") from None
        self._keys = (key,) if key else ()

    def _prompt(self, model: Any, request: Request, options: dict[str, Any], who: str) -> Any:
        """llm's ``model.prompt``: the system prompt and earlier turns as llm messages.

        The last user turn is also the ``prompt`` text and the system prompt ``system``,
        which plugins written before llm's messages API read.
        """
        import llm

        *earlier, last = request.messages
        history = [llm.system(request.system)] if request.system else []
        history += [llm.user(m.content) if m.role == "user" else llm.assistant(m.content)
                    for m in earlier]
        try:
            return model.prompt(last.content, system=request.system or None, messages=history,
                                stream=True, options=options)
        except Exception as err:  # pydantic's ValidationError, or a plugin's own refusal
            detail = one_line(str(err), *self.secrets(), limit=200)
            raise ConfigurationError(
                f"{who} refused the request ({detail}): change --max-tokens, --temperature or "
                f"--thinking.") from None

    def _error(self, err: Exception, who: str, mid_reply: bool) -> Exception:
        """A plugin's exception as one line, by its HTTP status or the kind its name says."""
        detail = one_line(f"{type(err).__name__}: {err}", *self.secrets(), limit=200)
        kind = type(err).__name__.lower()
        status = getattr(err, "status_code", None) or getattr(
            getattr(err, "response", None), "status_code", None)
        if status in (401, 403) or "authentication" in kind or "permission" in kind:
            return AuthenticationError(
                f"{who} rejected the key ({status or 'auth'}): set it again with `llm keys set`"
                f" or the plugin's environment variable.")
        if status == 429 or "ratelimit" in kind:
            return RateLimitError(f"{who} hit a rate limit: wait a minute and run the cell "
                                  f"again.")
        if "timeout" in kind:
            return ProviderTimeoutError(f"{who} did not answer in time: run the cell again.")
        if "connect" in kind:
            if mid_reply:
                return ProviderConnectionError(f"The connection to {who} dropped mid-reply: "
                                               f"run the cell again.")
            return ProviderConnectionError(f"Could not reach {who}: check your network or the "
                                           f"model's server ({detail}).")
        return ProviderError(f"{who} failed: {detail}; run the cell again, and if it keeps "
                             f"failing check the plugin's settings.")


def _hang_up() -> None:
    """Free the SDK stream a cancelled plugin left open, so its connection closes now.

    Plugins iterate an SDK stream without closing it (llm's OpenAI plugin does), and such
    a stream is a reference cycle (it holds its own generator): only the cycle collector
    frees it. What else the plugin left unclosed is freed too, and the ResourceWarnings
    about that are the plugin's (Python hides them by default), not ours to raise.
    """
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _takes(field: Any, kind: type) -> bool:
    """Whether an Options field's annotation accepts ``kind`` (``Optional[kind]`` too)."""
    annotation = getattr(field, "annotation", None)
    return annotation is kind or kind in get_args(annotation)


def _options(model: Any, model_id: str, request: Request) -> tuple[dict[str, Any], list[str]]:
    """Our request's settings as the model's own llm options, and notes on the ones it lacks."""
    fields: dict[str, Any] = dict(getattr(model.Options, "model_fields", {}))
    options: dict[str, Any] = {}
    notes: list[str] = []
    limit = next((f for f in MAX_TOKEN_OPTIONS if f in fields and _takes(fields[f], int)), None)
    if limit is not None:
        options[limit] = request.max_tokens
    if request.temperature is not None:
        if "temperature" in fields:
            options["temperature"] = request.temperature
        else:
            notes.append(f"--temperature was not sent: llm:{model_id} takes no temperature "
                         f"option.")
    if request.thinking_tokens:
        if "thinking_budget" in fields and _takes(fields["thinking_budget"], int):
            options["thinking_budget"] = request.thinking_tokens
            if "thinking" in fields and _takes(fields["thinking"], bool):
                options["thinking"] = True
        elif "thinking" in fields and _takes(fields["thinking"], bool):
            options["thinking"] = True
        else:
            notes.append(f"--thinking was ignored: extended thinking is an Anthropic feature "
                         f"and llm:{model_id} has no thinking option (use an anthropic: model "
                         f"for it).")
    if any(m.cache_prefix for m in request.messages):
        with _told_lock:
            first = model_id not in _told_cache
            _told_cache.add(model_id)
        if first:
            notes.append(f"Prompt caching is Anthropic-only: llm:{model_id} is sent the "
                         f"notebook data in full with every request.")
    return options, notes


def _stop_reason(raw: Any) -> str | None:
    """The stop reason, where the plugin keeps one in its raw response (OpenAI's, Claude's)."""
    if not isinstance(raw, dict):
        return None
    reason = raw.get("finish_reason") or raw.get("stop_reason")
    if reason is None and isinstance(raw.get("choices"), list) and raw["choices"]:
        first = raw["choices"][0]
        reason = first.get("finish_reason") if isinstance(first, dict) else None
    return str(reason) if reason else None
