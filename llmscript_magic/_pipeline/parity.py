"""Kernel and sandbox on the same versions, or the user told before the run.

The inserted cell promises the same result in the kernel as in the sandbox. That
holds only when both import the same library versions: pandas 1.5 and 3.1 parse
``format="mixed"`` dates differently, silently. So every generation (a) tells the
model the exact versions the image has, and (b) compares, for each distribution the
code imports, the image's version with the kernel's: a different major or minor
version is a warning in the checklist and on the run, or with ``strict_versions`` a
refusal. The image's side is probed once per image (``_sandbox/facts.py``); the
kernel's side is read from the modules already imported, else from package metadata
once per process, so the check costs well under a millisecond.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._sandbox.facts import canonical
from .validate import Check

if TYPE_CHECKING:
    from .._sandbox.facts import ImageFacts

#: Always named in the prompt when the image has them; other libraries are named when
#: no other installed distribution needs them (what the user asked for, not plumbing).
CORE = ("numpy", "pandas", "matplotlib", "scipy")
MAX_NAMED = 40


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


@functools.lru_cache(maxsize=64)
def _dist_infos(folder: str) -> dict[str, str]:
    """{distribution: version} of the .dist-info folders beside a module (one listdir)."""
    out: dict[str, str] = {}
    try:
        entries = os.listdir(folder)
    except OSError:
        return out
    for entry in entries:
        if entry.endswith(".dist-info"):
            name, _, version = entry[:-len(".dist-info")].partition("-")
            out.setdefault(canonical(name), version)
    return out


@functools.lru_cache(maxsize=512)
def _installed_version(module: str, dist: str) -> str | None:
    """Where the module would import from, and the dist-info beside it: a scan of every
    distribution (importlib.metadata's way) costs ~10 ms the first time."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None  # the kernel cannot import it: nothing to compare
    where = list(spec.submodule_search_locations or []) or [spec.origin or ""]
    for location in where:
        found = _dist_infos(os.path.dirname(location.rstrip(os.sep))).get(dist)
        if found:
            return found
    try:
        return md.version(dist)
    except (md.PackageNotFoundError, ValueError):
        return None


def kernel_version(module: str, dist: str) -> str | None:
    """The version the kernel runs: the imported module's own, else its metadata's."""
    loaded = sys.modules.get(module)
    version = getattr(loaded, "__version__", None) if loaded is not None else None
    if isinstance(version, str) and version[:1].isdigit():
        return version
    return _installed_version(module, dist)


def differences(modules: Iterable[str], facts: ImageFacts) -> list[str]:
    """One line per imported distribution whose major.minor differs between the two."""
    out = []
    seen: set[str] = set()
    for module in modules:
        found = facts.version_of(module)
        if found is None or found[0] in seen:
            continue
        dist, image_version = found
        seen.add(dist)
        mine = kernel_version(module, dist)
        if mine is not None and _minor(mine) != _minor(image_version):
            out.append(f"sandbox {dist} {image_version}, kernel {dist} {mine}")
    return out


def python_difference(facts: ImageFacts) -> str | None:
    kernel = ".".join(map(str, sys.version_info[:3]))
    if _minor(kernel) != _minor(facts.python):
        return f"sandbox Python {facts.python}, kernel Python {kernel}"
    return None


def parity_check(modules: Iterable[str], facts: ImageFacts, *, image: str,
                 refuse: bool) -> Check:
    """The checklist line: pass, or the differences as a warning (a failure if ``refuse``)."""
    diffs = [d for d in [python_difference(facts), *differences(modules, facts)] if d]
    if not diffs:
        return Check("parity", "pass", "the sandbox has the kernel's versions of what the "
                     "code imports")
    fix = (f"`%llmscript sandbox build --like-kernel` builds an image with the kernel's "
           f"versions (now: {image or 'the built-in image'})")
    if refuse:
        return Check("parity", "fail", "; ".join(diffs) + ": not run, since strict_versions "
                     f"is on; {fix}")
    return Check("parity", "warn", "; ".join(diffs) + f": results may differ; {fix}")


def environment_text(facts: ImageFacts) -> str:
    """The prompt's environment: the exact Python and library versions, only those there."""
    named = _named(facts)
    listing = ", ".join(f"{name} {facts.dists[name]}" for name in named)
    libs = f" with {listing}" if listing else " (standard library only)"
    plots = (" (figures left open are shown; do not call matplotlib.use() or choose a backend)"
             if "matplotlib" in facts.dists else "")
    return (f"It will run in a sandbox, and unchanged as a notebook cell: Python "
            f"{'.'.join(_minor(facts.python))}{libs}{plots}; no other third-party package is "
            "installed. No network, a small writable working folder, a time limit. Write "
            "code for exactly these versions.")


def _named(facts: ImageFacts) -> list[str]:
    required: set[str] = set()
    for deps in facts.requires.values():
        required.update(deps)
    roots = [d for d in facts.dists if d not in required and d not in _PLUMBING]
    core = [d for d in CORE if d in facts.dists]
    rest = sorted(set(roots) - set(core))
    return (core + rest)[:MAX_NAMED]


_PLUMBING = frozenset({"pip", "setuptools", "wheel"})
