"""``llmscript doctor``: every part the tool relies on, and the command that fixes it."""

from __future__ import annotations

from collections.abc import Callable


def _engine() -> tuple[bool, str]:
    """Reachable, and of which kind: Docker or Podman, rootful or rootless, where."""
    import os

    from .._sandbox.engine import connect, engine_facts

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        facts = engine_facts(connect(timeout=5))
    except Exception as err:  # any failure means: not usable; ours already say the fix
        return False, (str(err).splitlines() or [type(err).__name__])[0][:300]
    kind = f"{'rootless ' if facts['rootless'] else ''}{facts['name']} {facts['version']}"
    return True, f"{kind} engine reachable at {where}"


def _engine_limits() -> tuple[bool, str]:
    """Runs still work where a limit is not enforced, but never silently: a warning line."""
    from .._sandbox.engine import connect, engine_warning

    try:
        warning = engine_warning(connect(timeout=5))
    except Exception:
        return False, "limits: cannot tell while the engine is down"
    if warning:
        return False, f"limits: {warning}"
    return True, "limits: the engine enforces every sandbox limit"


def _budget() -> tuple[bool, str]:
    """The engine-wide budget of sandbox containers every kernel shares, and its queue now."""
    from .._sandbox.docker import sandbox_budget
    from .._sandbox.engine import connect

    try:
        budget = sandbox_budget(connect(timeout=5))
        held, waiting = budget.size - budget.free(), budget.waiting()
    except Exception as err:  # ours already say the fix; the engine's is said above
        return False, "sandbox budget: " + (str(err).splitlines() or [type(err).__name__])[0]
    return True, (f"sandbox budget: {budget.size} containers on this engine "
                  f"(LLMSCRIPT_SANDBOX_BUDGET), {held} in use, {waiting} kernels waiting "
                  f"({budget.folder})")


def _image() -> tuple[bool, str]:
    from .._sandbox import DEFAULT_IMAGE
    from .._sandbox.image import image_exists

    try:
        if image_exists(DEFAULT_IMAGE):
            return True, f"sandbox image {DEFAULT_IMAGE} present"
    except Exception:
        return False, "sandbox image: cannot tell while the engine is down"
    return False, f"sandbox image {DEFAULT_IMAGE} missing: run `llmscript sandbox build`"


def _env_image() -> tuple[bool, str]:
    """Which image runs from this environment: its own, or the built-in Debian one."""
    from .._sandbox.image import image_exists
    from .._sandbox.layers import env_image

    image = env_image()
    if image:
        try:
            there = image_exists(image)
        except Exception:
            there = True  # the engine row says what is wrong with it
        if not there:
            return False, (f"this environment's image {image} is gone: run `llmscript "
                           "sandbox build --like-kernel` (or your --packages) again")
        return True, f"runs from this environment use {image} (its packages)"
    return True, ("runs from this environment use the built-in image; `llmscript sandbox "
                  "build --like-kernel` makes one with this environment's versions")


def _isolation() -> tuple[bool, str]:
    """gVisor is optional (runs fall back to plain containers) but worth saying how to add."""
    from .._sandbox.engine import connect, gvisor_applies_seccomp, gvisor_problem

    try:
        client = connect(timeout=5)
        problem = gvisor_problem(client)
    except Exception:
        return False, "isolation: cannot tell while the engine is down"
    if problem is not None:
        return False, f"isolation: plain containers (gVisor not available: {problem})"
    if not gvisor_applies_seccomp(client):
        return False, ("isolation: gVisor, but runsc lacks --oci-seccomp so our seccomp profile "
                       "is not applied under it: add it to runtimeArgs in /etc/docker/daemon.json "
                       "and reload the engine with `kill -HUP $(pidof dockerd)`")
    return True, "isolation: gVisor (runsc) available; --isolation auto uses it"


def _local_sandbox() -> tuple[bool, str]:
    from .._sandbox.local import bubblewrap_problem

    problem = bubblewrap_problem()
    if problem is None:
        return True, "local sandbox: bubblewrap works"
    return False, f"local sandbox unavailable: {problem}"


def _keys() -> tuple[bool, str]:
    from ..providers import providers

    parts, ok = [], False
    for _, cls in sorted(providers().items()):
        if cls.key_env_var is None:
            continue
        is_set = cls.key_is_set()
        ok = ok or is_set
        parts.append(f"{cls.key_env_var} {'set' if is_set else 'not set'}")
    hint = "" if ok else " (export ANTHROPIC_API_KEY=..., or use `llmscript run --replay`)"
    return ok, "keys: " + ", ".join(parts) + hint


def _providers() -> tuple[bool, str]:
    """Installed provider plugins; one that fails to load is named with its fix, not dropped."""
    from ..providers import load_failures, providers

    names = ", ".join(sorted(providers())) or "none"
    failures = load_failures()
    broken = [f for f in failures if not f.optional]
    notes = "; ".join(str(f) for f in (*broken, *(f for f in failures if f.optional)))
    return not broken, f"providers: {names}" + (f"; {notes}" if notes else "")


def _llm_plugins() -> tuple[bool, str]:
    """The models the llm bridge reaches, by llm plugin; a plugin that fails is named."""
    from ..providers import providers

    cls = providers().get("llm")
    if cls is None:  # optional: the providers line says how to install it
        return True, "llm plugins: not bridged (pip install 'llmscript-magic[llm]' adds them)"
    try:
        groups = cls.model_groups()
    except Exception as err:  # the listing must not hide the other checks
        return False, f"llm plugins: could not list them ({type(err).__name__}: {err})"[:300]
    lines, ok = ["llm plugins (--model llm:MODEL):"], True
    for group in groups:
        if group.error is not None:
            ok = False
            lines.append(f"    {group.name}: failed to load ({group.error}): {group.fix}")
            continue
        shown = ", ".join(group.models[:8]) + (f" and {len(group.models) - 8} more"
                                                if len(group.models) > 8 else "")
        lines.append(f"    {group.name}: {shown}")
    return ok, "\n".join(lines)


def _extension() -> tuple[bool, str]:
    from pathlib import Path

    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        if (Path(base) / "llmscript-magic" / "package.json").is_file():
            return True, f"JupyterLab extension installed ({base})"
    return False, ("JupyterLab extension not found: reinstall with `pip install llmscript-magic` "
                   "(generated cells still insert, without metadata)")


#: (check, required): a missing key is only a warning, since replay needs none
CHECKS: list[tuple[Callable[[], tuple[bool, str]], bool]] = [
    (_engine, True), (_engine_limits, False), (_budget, False), (_image, True), (_env_image, False),
    (_isolation, False),
    (_local_sandbox, False),
    (_keys, False), (_providers, False), (_llm_plugins, False), (_extension, True),
]


def doctor() -> int:
    failed = 0
    for check, required in CHECKS:
        ok, message = check()
        failed += required and not ok
        print(f"{'✓' if ok else '✗' if required else '!'} {message}")
    return 1 if failed else 0
