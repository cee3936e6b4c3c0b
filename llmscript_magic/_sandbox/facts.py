"""What a sandbox image holds: its Python, its distributions and their import names.

Asked of the image once (one probe run, ~1 s), then kept in memory and on disk per
image id, so every later generation reads it for free: the prompt names these
versions and the parity check compares them with the kernel's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import SandboxError

#: Runs inside the sandbox: the first distribution of a name on sys.path is the one
#: that imports, so that version wins.
_PROBE = """\
import json, platform, site, importlib.metadata as md
dists, requires = {}, {}
for d in md.distributions():
    name = (d.metadata["Name"] or "").strip()
    if name and name not in dists:
        dists[name] = d.version
        requires[name] = [r for r in (d.requires or []) if "extra ==" not in r]
print(json.dumps({"python": platform.python_version(), "site": site.getsitepackages(),
                  "machine": platform.machine(), "glibc": platform.libc_ver()[1],
                  "dists": dists, "requires": requires, "modules": md.packages_distributions()}))
"""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    m = re.match(r"[A-Za-z0-9._-]+", requirement)
    return m.group(0) if m else requirement


@dataclass(frozen=True)
class ImageFacts:
    """One image's Python version, distributions (canonical name -> version) and modules."""

    python: str
    dists: dict[str, str] = field(default_factory=dict)
    modules: dict[str, list[str]] = field(default_factory=dict)  # import name -> dists
    site: tuple[str, ...] = ()
    machine: str = ""  # x86_64, aarch64: which wheels fit
    glibc: str = ""  # the newest manylinux tag that fits
    requires: dict[str, list[str]] = field(default_factory=dict)  # dist -> dists it needs

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageFacts:
        return cls(python=str(data["python"]),
                   dists={canonical(k): str(v) for k, v in data.get("dists", {}).items()},
                   modules={k: [canonical(d) for d in v]
                            for k, v in data.get("modules", {}).items()},
                   site=tuple(data.get("site", ())), machine=str(data.get("machine", "")),
                   glibc=str(data.get("glibc", "")),
                   requires={canonical(k): [canonical(_name(r)) for r in v]
                             for k, v in data.get("requires", {}).items()})

    def to_json(self) -> dict[str, Any]:
        return {"python": self.python, "dists": self.dists, "modules": self.modules,
                "site": list(self.site), "machine": self.machine, "glibc": self.glibc,
                "requires": self.requires}

    def version_of(self, module: str) -> tuple[str, str] | None:
        """(distribution, version) that provides the top-level ``module``, if any."""
        for dist in self.modules.get(module, ()):
            if dist in self.dists:
                return dist, self.dists[dist]
        dist = canonical(module)
        return (dist, self.dists[dist]) if dist in self.dists else None


_memory: dict[str, ImageFacts] = {}


def _cache_file(image_id: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmscript"
    return root / f"image-facts-1-{image_id.replace(':', '-')}.json"


def facts_for_id(image_id: str) -> ImageFacts | None:
    """The facts already known for an image id (memory, then disk); None if never probed."""
    facts = _memory.get(image_id)
    if facts is None:
        try:
            facts = ImageFacts.from_json(json.loads(_cache_file(image_id).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        _memory[image_id] = facts
    return facts


def probe(sandbox: Any) -> ImageFacts:
    """The facts of ``sandbox``'s image (a ``DockerSandbox``): cached, else one run."""
    from .base import Limits

    image_id = str(sandbox.image_id)
    known = facts_for_id(image_id)
    if known is not None:
        return known
    result = sandbox.run(_PROBE, limits=Limits(timeout=60, memory_mb=256))
    if result.status != "ok":
        raise SandboxError(f"Could not read the sandbox image's versions: {result.reason}")
    try:
        facts = ImageFacts.from_json(json.loads(result.stdout.strip().splitlines()[-1]))
    except (ValueError, KeyError, TypeError, IndexError):
        raise SandboxError("Could not read the sandbox image's versions: the probe's output "
                           "was not what it prints; rebuild the image") from None
    _memory[image_id] = facts
    try:
        path = _cache_file(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(facts.to_json()))
    except OSError:
        pass
    return facts


def image_facts(image: str | None = None) -> ImageFacts:
    """The facts of the named image (default: the built-in one) on the shared sandbox."""
    from .spec import SHARED, SandboxSpec

    return probe(SHARED.get(SandboxSpec(image=image or "")))
