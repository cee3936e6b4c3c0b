"""The models simonw/llm's installed plugins offer, by plugin, and the plugins that fail.

llm loads its plugins in one pass (pluggy's entry-point scan), so one plugin that fails
to import stops the scan and takes every plugin after it down too; and llm does not say
which plugin registered which model. So this module first imports each ``llm`` entry
point itself and blocks the ones that fail (pluggy's ``set_blocked``: llm's own scan then
skips them), and asks each plugin's ``register_models`` hook on its own. A broken plugin
is then listed with its error and fix, like our own provider plugins, and the rest work.

Only used once a bridged model is asked for or listed: ``llm`` is imported here, never by
``%load_ext``.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from typing import Any

from .._errors import UnknownModelError
from .base import ModelGroup, one_line

#: what llm's own plugins (``llm.default_plugins.*``: OpenAI's models) are listed as
BUILTIN = "llm (built in)"

_lock = threading.Lock()
#: plugins whose entry point failed to import, kept for the life of the process (as llm
#: keeps the ones that loaded): distribution name -> (reason, fix)
_import_failures: dict[str, tuple[str, str]] = {}


@dataclass(frozen=True)
class Bridged:
    """One model an llm plugin registered: the plugin's name, the llm model, its aliases."""

    plugin: str
    model: Any  # llm.Model
    aliases: tuple[str, ...] = ()

    @property
    def model_id(self) -> str:
        return str(self.model.model_id)


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else str(ep.value).split(":")[0].split(".")[0]


def _failure(err: BaseException, dist: str) -> tuple[str, str]:
    """(reason, fix) for a plugin that could not be loaded or asked for its models."""
    if isinstance(err, ImportError) and err.name:
        missing = err.name.split(".")[0]
        return f"cannot import {missing}", f"pip install --upgrade {dist}"
    return (one_line(f"{type(err).__name__}: {err}", limit=160),
            f"upgrade, reinstall or uninstall {dist}")


def _load_plugins() -> None:
    """llm's plugin loading, with each entry point tried on its own first."""
    from importlib.metadata import entry_points

    from llm import plugins

    with _lock:
        scans = (not getattr(plugins, "_loaded", False) and plugins.LLM_LOAD_PLUGINS is None
                 and not hasattr(sys, "_called_from_test"))  # llm's own conditions
        if scans:
            for ep in entry_points(group="llm"):
                if plugins.pm.get_plugin(ep.name) is not None or plugins.pm.is_blocked(ep.name):
                    continue
                try:
                    ep.load()  # only imports it: llm's scan registers it with its metadata
                except Exception as err:  # a broken plugin must not break the others
                    _import_failures[_dist_name(ep)] = _failure(err, _dist_name(ep))
                    plugins.pm.set_blocked(ep.name)
        plugins.load_plugins()


def _user_aliases() -> dict[str, list[str]]:
    """``llm aliases set``: aliases.json in llm's user folder, as model id -> aliases."""
    import llm

    path = llm.user_dir() / "aliases.json"
    try:
        configured = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}  # llm itself reports a broken aliases.json when its CLI runs
    by_model: dict[str, list[str]] = {}
    for alias, model_id in configured.items():
        by_model.setdefault(str(model_id), []).append(str(alias))
    return by_model


def catalog() -> tuple[list[Bridged], dict[str, tuple[str, str]]]:
    """Every sync model the installed plugins offer, and the plugins that failed (with fix).

    Asked afresh each time: plugins read their settings (extra-openai-models.yaml,
    aliases.json) when asked, and asking costs milliseconds.
    """
    _load_plugins()
    from llm.plugins import pm

    dists = {plugin: (getattr(d, "name", None) or d.project_name)
             for plugin, d in pm.list_plugin_distinfo()}
    aliases = _user_aliases()
    found: list[Bridged] = []
    failures = dict(_import_failures)
    for impl in reversed(pm.hook.register_models.get_hookimpls()):  # in registration order
        name = pm.get_name(impl.plugin) or ""
        plugin = str(dists.get(impl.plugin) or (BUILTIN if name.startswith("llm.") else name))
        got: list[tuple[Any, tuple[str, ...]]] = []

        def register(model: Any, async_model: Any = None, aliases: Any = None,
                     _got: list[tuple[Any, tuple[str, ...]]] = got) -> None:
            if model is not None:  # async-only models cannot answer a notebook's request
                _got.append((model, tuple(aliases or ())))

        given = {"register": register, "model_aliases": []}
        try:
            impl.function(**{arg: given[arg] for arg in impl.argnames if arg in given})
        except Exception as err:  # one plugin's failure is listed, not raised
            failures[plugin] = _failure(err, plugin)
            continue
        found.extend(Bridged(plugin, model, (*names, *aliases.get(str(model.model_id), ())))
                     for model, names in got)
    return found, failures


def groups() -> tuple[ModelGroup, ...]:
    """The catalog as ``%llmscript models`` lists it: one group per plugin."""
    found, failures = catalog()
    by_plugin: dict[str, list[str]] = {}
    for bridged in found:
        by_plugin.setdefault(bridged.plugin, []).append(bridged.model_id)
    listed = [ModelGroup(plugin, tuple(ids)) for plugin, ids in by_plugin.items()]
    listed += [ModelGroup(plugin, error=reason, fix=fix)
               for plugin, (reason, fix) in sorted(failures.items())]
    return tuple(listed)


def find(name: str) -> Bridged:
    """The model ``llm:NAME`` means: a model id first, then an alias (llm's or aliases.json)."""
    found, failures = catalog()
    for bridged in found:
        if bridged.model_id == name:
            return bridged
    for bridged in found:
        if name in bridged.aliases:
            return bridged
    broken = "".join(f"; {plugin} failed to load ({reason}): {fix}"
                     for plugin, (reason, fix) in sorted(failures.items()))
    plugins = sorted({b.plugin for b in found} - {BUILTIN})
    have = f" (installed llm plugins: {', '.join(plugins)})" if plugins else ""
    raise UnknownModelError(
        f"No llm plugin offers a model {name!r}{have}: pick one from %llmscript models, or "
        f"install the plugin that has it (pip install llm-gemini, for example){broken}.")
