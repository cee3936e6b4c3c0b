"""Sandbox images with the kernel's packages: one layer of Linux wheels over a base image.

The image has no pip and no network, so the host's pip fetches the wheels (from the
index it is configured with, or its cache and local wheels when offline) for the
image's Python and platform (``pip install --target --only-binary=:all: --platform
...``) into a folder that ``docker build`` copies over the base (``FROM`` a local
image: no registry is needed). The image carries its requested list as a label and
is found again by it: the same list builds nothing, and a list that only adds to an
image already built adds one layer on top of it.

Where the packages go: the base's first site folder
(``/usr/local/lib/python3.X/dist-packages`` on the Debian image), which comes before
Debian's own ``/usr/lib/python3/dist-packages`` on ``sys.path``, so a pinned
pandas shadows the image's older one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, SandboxError
from .facts import ImageFacts, canonical
from .harness.protocol import SCRIPT_UID
from .image import DEFAULT_IMAGE, IMAGE_REPO, IMAGE_VERSION, LABEL

Log = Callable[[str], Any]

PACKAGES_LABEL = "llmscript.packages"  # JSON list of the requested requirements
KEY_LABEL = "llmscript.packages.key"  # hash of (root image id, requested list)
ROOT_LABEL = "llmscript.root"  # the image id the layers start from
INSTALLED_LABEL = "llmscript.installed"  # JSON {distribution: version} pip put in our layers

_REQ = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\[[A-Za-z0-9._, -]+\])?"
                  r"(?:\s*(?:==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+"
                  r"(?:\s*,\s*(?:==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+)*)?")

def req_name(req: str) -> str:
    """The canonical distribution name of a requirement string."""
    m = re.match(r"[A-Za-z0-9._-]+", req)
    return canonical(m.group(0)) if m else ""


def check_requirement(req: str, where: str = "--packages") -> str:
    """A NAME[==VERSION] requirement, or one line on how to write it."""
    text = req.strip()
    if not _REQ.fullmatch(text):
        raise ConfigurationError(
            f"{where} {req!r} is not a package: write NAME or NAME==VERSION, e.g. "
            "seaborn or pandas==2.2.3")
    return re.sub(r"\s+", "", text)


def read_requirements(path: str) -> list[str]:
    """NAME[==VER] lines of a requirements file (comments and blank lines skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise ConfigurationError(f"--requirements {path}: {err.strerror or err}: give a "
                                 "readable requirements file") from None
    out = []
    for n, line in enumerate(lines, 1):
        text = line.split(" #")[0].strip()
        if text and not text.startswith("#"):
            out.append(check_requirement(text, f"{path} line {n}:"))
    return out


def merge(*lists: Iterable[str]) -> tuple[str, ...]:
    """One requirement per distribution, later lists winning, sorted by name."""
    by_name: dict[str, str] = {}
    for reqs in lists:
        for req in reqs:
            by_name[req_name(req)] = req
    return tuple(by_name[k] for k in sorted(by_name))


# -- images we built ----------------------------------------------------------------

@dataclass(frozen=True)
class Built:
    """An image of ours: its tag/id, requested list and what pip installed."""

    ref: str
    root: str
    packages: tuple[str, ...]
    installed: dict[str, str]


def _built(image: Any) -> Built | None:
    labels = image.labels or {}
    if PACKAGES_LABEL not in labels:
        return None
    return Built(image.tags[0] if image.tags else image.id, labels.get(ROOT_LABEL, ""),
                 tuple(json.loads(labels[PACKAGES_LABEL])),
                 dict(json.loads(labels.get(INSTALLED_LABEL, "{}"))))


def _key(root_id: str, packages: Sequence[str]) -> str:
    return hashlib.sha256("\n".join([root_id, *packages]).encode()).hexdigest()


def _client() -> Any:
    from .engine import connect

    return connect(timeout=1800)


def find_built(client: Any, root_id: str, packages: Sequence[str]) -> Built | None:
    """The image already built for exactly this list over this root, if any."""
    found = client.images.list(filters={"label": f"{KEY_LABEL}={_key(root_id, packages)}"})
    return _built(found[0]) if found else None


def _best_lower(client: Any, root_id: str, packages: Sequence[str]) -> Built | None:
    """The largest image of ours whose list is part of ``packages`` and that a layer can
    extend: it pins none of the new names to another version."""
    wanted = set(packages)
    new_names = {req_name(r) for r in packages}
    best = None
    for image in client.images.list(filters={"label": f"{ROOT_LABEL}={root_id}"}):
        built = _built(image)
        if built is None or not set(built.packages) <= wanted:
            continue
        added = new_names - {req_name(r) for r in built.packages}
        if added & set(built.installed):
            continue  # a new package would replace one of its files: start from the root
        if best is None or len(built.packages) > len(best.packages):
            best = built
    return best


# -- the build -----------------------------------------------------------------------

def _platforms(facts: ImageFacts) -> list[str]:
    """pip --platform tags for the image: manylinux up to its glibc, for its machine."""
    machine = facts.machine or "x86_64"
    major, minor = (int(x) for x in (facts.glibc or "2.17").split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    return [*tags, f"manylinux2014_{machine}", f"manylinux2010_{machine}",
            f"manylinux1_{machine}", f"linux_{machine}"]


def _pip_install(reqs: Sequence[str], target: Path, facts: ImageFacts,
                 constraints: dict[str, str], log: Log) -> list[str]:
    """Linux wheels for the image's Python into ``target``; returns what had none.

    A distribution with no wheel for Linux (a macOS-only helper, a local editable
    install) is left out with a note rather than failing the whole build.
    """
    major, minor = facts.python.split(".")[:2]
    left_out: list[str] = []
    todo = list(reqs)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write("\n".join(f"{k}=={v}" for k, v in sorted(constraints.items())
                           if k not in {req_name(r) for r in reqs}))
        cfile = fh.name
    try:
        for _ in range(20):
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input",
                   "--disable-pip-version-check", "--target", str(target), "--no-compile",
                   "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", f"{major}.{minor}", "--abi", f"cp{major}{minor}",
                   *(a for p in _platforms(facts) for a in ("--platform", p)),
                   "-c", cfile, *todo]
            log(f"pip: {len(todo)} requirement(s) for Python {major}.{minor} "
                f"({facts.machine or 'x86_64'})")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                return left_out
            missing = re.findall(r"No matching distribution found for ([A-Za-z0-9._-]+)",
                                 proc.stderr)
            drop = {canonical(m) for m in missing} & {req_name(r) for r in todo}
            if not drop or drop & {req_name(r) for r in reqs if "==" not in r}:
                tail = [ln for ln in proc.stderr.splitlines()
                        if ln.startswith("ERROR") and "is ignored" not in ln]
                raise SandboxError("pip could not get Linux wheels for the image: "
                                   + "; ".join(tail[-2:] or ["see pip's output"])[:300]
                                   + ": check the package names and versions")
            left_out += sorted(drop)
            todo = [r for r in todo if req_name(r) not in drop]
            shutil.rmtree(target, ignore_errors=True)
        raise SandboxError("pip kept failing for the image's packages: check the list")
    finally:
        os.unlink(cfile)


def _drop_lower(target: Path, lower: dict[str, str]) -> None:
    """Remove what a lower layer already has at the same version (pip --target cannot see
    it, so it installs numpy again for seaborn): the new layer holds only what is new."""
    root = target.resolve()
    for info in target.glob("*.dist-info"):
        name, _, version = info.name[:-len(".dist-info")].partition("-")
        if lower.get(canonical(name)) != version or not (info / "RECORD").is_file():
            continue
        for line in (info / "RECORD").read_text().splitlines():
            path = (target / line.rsplit(",", 2)[0]).resolve()
            if path.is_relative_to(root) and path.is_file():
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
    for folder in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


def _slim(target: Path) -> None:
    """Drop what no script imports: packages' own test suites (a fifth of the bytes of
    scipy, pandas, scikit-learn, statsmodels), console scripts with the host's shebang."""
    for junk in ("bin", "share"):
        shutil.rmtree(target / junk, ignore_errors=True)
    for tests in [p for p in target.glob("*/**/tests") if p.is_dir()]:
        shutil.rmtree(tests, ignore_errors=True)


def _compile(target: Path, site: str, python: str | None, log: Log) -> None:
    """Bytecode for the image's Python, made here on every core: the image is read-only,
    so without it every run would compile pandas again. Hash-checked-free pycs do not
    depend on the files' times; ``python`` must be the image's minor version."""
    if python is None:
        log("no interpreter of the image's Python version here: no bytecode compiled")
        return
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                    "unchecked-hash", "-s", str(target), "-p", site, str(target)],
                   capture_output=True)  # a file that does not compile is left as source


def _commit_layer(client: Any, lower: str, target: Path, site: str,
                  labels: dict[str, str], tag: str, log: Log) -> str:
    """One layer over ``lower``: the folder copied in at ``site`` and committed. Fewer
    copies of the bytes than a ``docker build`` context (no context upload, no COPY)."""
    import docker

    log(f"layer {tag}")
    stage = target.parent / "root"
    dest = stage / site.lstrip("/")
    dest.parent.mkdir(parents=True)
    target.rename(dest)
    tar = subprocess.Popen(["tar", "-C", str(stage), "--owner=0", "--group=0",
                            "--numeric-owner", "-c", site.lstrip("/")],
                           stdout=subprocess.PIPE)
    cid = client.api.create_container(lower, command=["true"], user="0:0",
                                      network_disabled=True)["Id"]
    try:
        assert tar.stdout is not None
        client.api.put_archive(cid, "/", tar.stdout)
        tar.wait()
        if tar.returncode != 0:
            raise SandboxError(f"tar of the packages failed (exit {tar.returncode})")
        changes = [f"USER {SCRIPT_UID}:{SCRIPT_UID}",
                   "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())]
        repo, _, name = tag.partition(":")
        image_id = client.api.commit(cid, repository=repo, tag=name, changes=changes)["Id"]
    except docker.errors.DockerException as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:300]
        raise SandboxError(f"Adding the packages to {lower} failed ({first}): check that "
                           "the engine is running and has disk space, then build again"
                           ) from None
    finally:
        if tar.poll() is None:
            tar.kill()
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
        client.api.remove_container(cid, force=True)
    return str(image_id)


def _installed(target: Path) -> dict[str, str]:
    out = {}
    for info in target.glob("*.dist-info"):
        name, _, version = info.name[:-len(".dist-info")].partition("-")
        out[canonical(name)] = version
    return out


def _docker_build(client: Any, context: Path, tag: str, log: Log) -> str:
    import docker

    log(f"docker build {tag}")
    try:
        image, _ = client.images.build(path=str(context), tag=tag, rm=True, forcerm=True,
                                       network_mode="none")
    except docker.errors.DockerException as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:300]
        raise SandboxError(f"Building {tag} failed ({first}): check that the engine is "
                           "running and has disk space, then build again") from None
    return str(image.id)


def build_packages(packages: Sequence[str], *, base: str = DEFAULT_IMAGE,
                   constraints: dict[str, str] | None = None, python: str | None = None,
                   log: Log = print) -> Built:
    """An image of ``base`` plus ``packages`` (NAME[==VER]): found, layered, or built.

    ``constraints``: versions a dependency gets if pip needs it (the kernel's), so an
    added package brings the kernel's numpy, not the newest one. ``python``: an
    interpreter of the image's minor version, which compiles the bytecode.
    """
    from .facts import image_facts

    packages = merge(packages)
    client = _client()
    root_id = str(client.images.get(base).id)
    if not packages:
        return Built(base, root_id, (), {})
    found = find_built(client, root_id, packages)
    if found is not None:
        log(f"{found.ref} already has these {len(packages)} package(s)")
        return found
    lower = _best_lower(client, root_id, packages)
    start = time.monotonic()
    facts = image_facts(base)
    new = [r for r in packages if lower is None or r not in lower.packages]
    key = _key(root_id, packages)
    tag = f"{IMAGE_REPO}:env-{key[:12]}"
    site = facts.site[0] if facts.site else f"/usr/local/lib/python{facts.python[:4]}"
    with tempfile.TemporaryDirectory(prefix="llmscript-layer-") as tmp:
        ctx = Path(tmp)
        target = ctx / "site"
        pinned = {**(constraints or {}), **(lower.installed if lower else {})}
        left_out = _pip_install(new, target, facts, pinned, log)
        log(f"pip done in {time.monotonic() - start:.0f} s")
        if left_out:
            log(f"left out (no Linux wheel): {', '.join(left_out)}")
        _slim(target)
        if lower is not None:
            _drop_lower(target, lower.installed)
        _compile(target, site, python, log)
        installed = {**(lower.installed if lower else {}), **_installed(target)}
        labels = {f"{LABEL}.image": IMAGE_VERSION, ROOT_LABEL: root_id,
                  PACKAGES_LABEL: json.dumps(list(packages)), KEY_LABEL: key,
                  INSTALLED_LABEL: json.dumps(installed, sort_keys=True)}
        _commit_layer(client, lower.ref if lower else root_id, target, site, labels, tag,
                      log)
    log(f"built {tag} ({'one layer over ' + lower.ref if lower else 'over ' + base}) "
        f"in {time.monotonic() - start:.0f} s")
    return Built(tag, root_id, packages, installed)


# -- which image this environment runs in ------------------------------------------

def _records_file() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmscript"
    return root / "env-images.json"


_records: tuple[float, dict[str, dict[str, Any]]] = (-1.0, {})


def _read_records() -> dict[str, dict[str, Any]]:
    """{environment prefix: {"image": tag, "packages": [...]}}; re-read when it changed."""
    global _records
    path = _records_file()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {}
    if mtime != _records[0]:
        try:
            _records = (mtime, dict(json.loads(path.read_text())))
        except (OSError, ValueError):
            return {}
    return _records[1]


def record(prefix: str, built: Built) -> None:
    """Remember ``built`` as the image runs from the environment at ``prefix`` use."""
    records = dict(_read_records())
    records[prefix] = {"image": built.ref, "packages": list(built.packages)}
    path = _records_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=1))
    os.replace(tmp, path)


def env_packages(prefix: str | None = None) -> tuple[str, ...]:
    """The list the environment's image was last built with (empty: none)."""
    entry = _read_records().get(prefix or sys.prefix) or {}
    return tuple(entry.get("packages", ()))


_session = [""]  # the image this process built or was told to use last


def env_image(prefix: str | None = None) -> str:
    """The image built for this environment ('' = none: the built-in image)."""
    if _session[0] and prefix is None:
        return _session[0]
    entry = _read_records().get(prefix or sys.prefix) or {}
    return str(entry.get("image", ""))


def build_for_env(*, like_kernel: bool = False, packages: Sequence[str] = (),
                  requirements: str | None = None, python: str | None = None,
                  base: str = DEFAULT_IMAGE, log: Log = print) -> Built:
    """``llmscript sandbox build --like-kernel/--packages/--requirements`` for one
    environment: its earlier list, plus the kernel's pins, plus the named packages.

    The result becomes the environment's image: later runs from it use it by default.
    """
    wanted = [check_requirement(p) for p in packages]
    if requirements:
        wanted += read_requirements(requirements)
    from .kernel_python import kernel_env, python_base

    env = kernel_env(python)
    base = python_base(env, base, log)
    kernel = {req_name(p): p.split("==", 1)[1] for p in env.pins}
    # A bare name the kernel has gets the kernel's version: the point is the same result.
    wanted = [f"{r}=={kernel[req_name(r)]}" if re.fullmatch(r"[\w.-]+", r)
              and req_name(r) in kernel else r for r in wanted]
    pins = env.pins if like_kernel else ()
    built = build_packages(merge(env_packages(env.prefix), pins, wanted), base=base,
                           constraints=kernel, python=python or sys.executable, log=log)
    record(env.prefix, built)
    _session[0] = built.ref
    return built
