"""Finding providers: entry points (scanned once per process), plus ones registered by hand.

A plugin that cannot be loaded does not vanish: its name and a one-line reason,
with the command that fixes it, are kept for ``llmscript doctor`` and
``%llmscript models``. The built-in ``openai`` provider needs the optional
``openai`` package; without it that is a note, not an error.

Also here, because the pipeline reaches providers only through this module:
which instance answers a request (a registered instance, e.g. a test's fake,
or a new one) and the one place where a plugin's stray exception becomes a
one-line ``ProviderError``.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from .._errors import LLMScriptError, ProviderError, UnknownModelError
from .base import Provider, Reply, Request, one_line

ENTRY_POINT_GROUP = "llmscript_magic.providers"
_BUILTIN_PREFIX = "llmscript_magic."


@dataclass(frozen=True)
class LoadFailure:
    """A provider entry point that could not be loaded, and how to fix it."""

    name: str
    reason: str
    fix: str
    #: an optional built-in whose extra is not installed: a note, not an error
    optional: bool = False

    def __str__(self) -> str:
        if self.optional:
            return f"{self.name}: not installed (optional): {self.fix}"
        return f"{self.name}: failed to load ({self.reason}): {self.fix}"


_registered: dict[str, type[Provider] | Provider] = {}
_scan_lock = threading.Lock()
_scanned: tuple[dict[str, type[Provider]], tuple[LoadFailure, ...]] | None = None


def register(provider: type[Provider] | Provider) -> Any:
    """Register a provider class, or an instance that then answers every request, by hand.

    For notebooks and tests; installed plugins use the entry point instead. Returns
    its argument, so it works as a class decorator.
    """
    _registered[provider.name] = provider
    return provider


def unregister(name: str) -> None:
    """Forget a provider registered by hand (entry points are unaffected)."""
    _registered.pop(name, None)


def _scan() -> tuple[dict[str, type[Provider]], tuple[LoadFailure, ...]]:
    """Load every entry point once per process: importing plugins is not free."""
    global _scanned
    with _scan_lock:
        if _scanned is None:
            from importlib.metadata import entry_points

            found: dict[str, type[Provider]] = {}
            failures: list[LoadFailure] = []
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    loaded = ep.load()
                except Exception as err:  # a broken plugin must not break the others
                    failures.append(_failure(ep, err))
                    continue
                if not (isinstance(loaded, type) and issubclass(loaded, Provider)):
                    failures.append(LoadFailure(
                        ep.name, f"{ep.value} is not a Provider subclass",
                        f"upgrade or uninstall {_dist(ep)}"))
                    continue
                found[ep.name] = loaded
            _builtins(found, failures)
            _scanned = (found, tuple(failures))
        return _scanned


#: the providers this package ships: found even when it runs from a source folder on
#: PYTHONPATH, or an install older than one of them, whose metadata lacks the entry point
BUILTINS = {"anthropic": "llmscript_magic.providers.anthropic:AnthropicProvider",
            "openai": "llmscript_magic.providers.openai:OpenAIProvider",
            "course": "llmscript_magic.providers.course:CourseProvider"}


def _builtins(found: dict[str, type[Provider]], failures: list[LoadFailure]) -> None:
    from importlib import import_module
    from importlib.metadata import EntryPoint

    failed = {f.name for f in failures}
    for name, target in BUILTINS.items():
        if name in found or name in failed:
            continue
        module, _, attr = target.partition(":")
        try:
            found[name] = getattr(import_module(module), attr)
        except ImportError as err:  # openai's SDK is optional
            failures.append(_failure(EntryPoint(name, target, ENTRY_POINT_GROUP), err))


def rescan() -> None:
    """Scan entry points again on next use (after installing a plugin into a running kernel)."""
    global _scanned
    with _scan_lock:
        _scanned = None


def _dist(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else ep.value.split(":")[0].split(".")[0]


def _failure(ep: Any, err: Exception) -> LoadFailure:
    """Why an entry point failed, and the command that fixes it."""
    module = ep.value.split(":")[0]
    if isinstance(err, ImportError) and err.name:
        missing = err.name.split(".")[0]
        if module.startswith(_BUILTIN_PREFIX):
            return LoadFailure(ep.name, f"needs the {missing} package",
                               f"pip install 'llmscript-magic[{ep.name}]'", optional=True)
        if missing == module.split(".")[0]:
            return LoadFailure(ep.name, f"its module {module} is missing",
                               f"reinstall it: pip install --force-reinstall {_dist(ep)}")
        return LoadFailure(ep.name, f"cannot import {missing}",
                           f"pip install {missing} (needed by {_dist(ep)})")
    return LoadFailure(ep.name, one_line(f"{type(err).__name__}: {err}", limit=160),
                       f"upgrade, reinstall or uninstall {_dist(ep)}")


def providers() -> dict[str, type[Provider]]:
    """Every usable provider class by name: entry points, then ones registered by hand."""
    found = dict(_scan()[0])
    for name, provider in _registered.items():
        found[name] = provider if isinstance(provider, type) else type(provider)
    return found


def load_failures() -> tuple[LoadFailure, ...]:
    """Entry points that could not be loaded (minus any a hand registration replaced)."""
    return tuple(f for f in _scan()[1] if f.name not in _registered)


def resolve_model(name: str, default_provider: str = "anthropic") -> tuple[type[Provider], str]:
    """``provider:model``, ``provider:`` or a bare model name -> (provider class, model id)."""
    known = providers()
    if ":" in name:
        pname, _, model = name.partition(":")
        if pname not in known:
            raise UnknownModelError(_unknown_provider(pname, name, known))
        cls = known[pname]
        return cls, model or cls.default_model
    if not name:
        default = known.get(default_provider)
        if default is None:
            raise UnknownModelError(_unknown_provider(default_provider, None, known))
        return default, default.default_model
    for cls in known.values():
        if name in cls.models or any(name.startswith(p) for p in cls.model_prefixes):
            return cls, name
    raise UnknownModelError(
        f"Unknown model {name!r}: write it as provider:model (e.g. anthropic:{name}) or pick one "
        f"from %llmscript models."
    )


def _unknown_provider(pname: str, model: str | None, known: dict[str, type[Provider]]) -> str:
    """Installed-but-broken says why and how to fix; otherwise list what is known."""
    broken = next((f for f in load_failures() if f.name == pname), None)
    if broken is not None:
        state = "is not installed" if broken.optional else f"failed to load ({broken.reason})"
        return f"Provider {pname!r} {state}: {broken.fix}."
    where = f" in --model {model!r}" if model is not None else " (the default)"
    return (f"Unknown provider {pname!r}{where}; known providers: "
            f"{', '.join(sorted(known)) or 'none'} (see %llmscript models).")


def provider_instance(cls: type[Provider], api_key: str | None = None, *,
                      timeout: float = 120.0, max_retries: int = 2,
                      base_url: str | None = None) -> Provider:
    """The instance that answers: one registered by hand under this name, or a new one."""
    registered = _registered.get(cls.name)
    if isinstance(registered, cls):
        return registered
    return cls(api_key, timeout=timeout, max_retries=max_retries, base_url=base_url)


def stream_reply(provider: Provider, request: Request,
                 reply: Reply) -> Generator[str, None, None]:
    """``provider.stream`` with every stray exception turned into a one-line ``ProviderError``.

    Our own errors already read as one line and pass through; anything else a
    plugin raises (a bug, an SDK's own exception) would otherwise reach the user
    as a traceback. ``close()`` on this generator closes the plugin's (cancellation).
    """
    chunks: Iterator[str] | None = None
    try:
        chunks = provider.stream(request, reply)
        for chunk in chunks:
            if not isinstance(chunk, str):
                raise ProviderError(
                    f"Provider {provider.name} failed: it yielded {type(chunk).__name__}, not "
                    f"text; report this to the provider's author."
                )
            yield chunk
    except LLMScriptError:
        raise
    except Exception as err:
        detail = one_line(f"{type(err).__name__}: {err}", *provider.secrets(), limit=200)
        raise ProviderError(
            f"Provider {provider.name} failed: {detail}; run the cell again, and if it keeps "
            f"failing report it to the provider's author."
        ) from err
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # hangs up the HTTP stream when the user cancels
