"""The kernel's side of an image built like it: its pinned packages, and its Python.

``kernel_env`` lists what user code in an interpreter's environment can import, at
its versions (leaving out Jupyter's machinery and this product). ``python_base``
gives the image the kernel's Python minor version: the base as it is when they
match, else (on Linux hosts) a layer with the kernel's own interpreter copied in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .._errors import ConfigurationError
from .facts import canonical
from .harness.protocol import SCRIPT_UID
from .image import IMAGE_REPO, IMAGE_VERSION, LABEL
from .layers import KEY_LABEL, Log, _client, _docker_build, _key, req_name

#: The kernel's own machinery: left out of --like-kernel with everything only it needs.
MACHINERY = (
    "llmscript-magic", "ipykernel", "ipython", "jupyter", "jupyterlab", "notebook",
    "jupyter-server", "jupyter-client", "jupyter-core", "nbclient", "nbconvert", "nbformat",
    "ipywidgets", "widgetsnbextension", "jupyterlab-widgets", "papermill", "voila",
    "pip", "setuptools", "wheel", "debugpy",
)


# -- the kernel's environment -------------------------------------------------------

_LIST_ENV = """\
import json, sys, importlib.metadata as md
out = {}
for d in md.distributions():
    name = (d.metadata["Name"] or "").strip()
    if name and name not in out:
        out[name] = [d.version, [r for r in (d.requires or []) if "extra ==" not in r]]
print(json.dumps({"prefix": sys.prefix, "base_prefix": sys.base_prefix,
                  "python": "%d.%d.%d" % sys.version_info[:3], "dists": out}))
"""


@dataclass(frozen=True)
class KernelEnv:
    """An interpreter's environment: where it lives, its Python and its pins."""

    prefix: str
    base_prefix: str
    python: str
    pins: tuple[str, ...]  # NAME==VERSION of what user code there can import


def kernel_env(python: str | None = None) -> KernelEnv:
    """The distributions user code can import in ``python``'s environment, pinned.

    Leaves out the kernel's machinery (Jupyter, IPython, this product, pip) and what
    only they need; keeps what any other distribution needs (python-dateutil for
    pandas), so the pins are complete.
    """
    exe = python or sys.executable
    try:
        proc = subprocess.run([exe, "-I", "-c", _LIST_ENV], capture_output=True, text=True,
                              timeout=120)
        data = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        raise ConfigurationError(f"Could not list the packages of {exe}: give a Python "
                                 "interpreter with --python") from None
    dists = {canonical(k): (v[0], [req_name(r) for r in v[1]])
             for k, v in data["dists"].items()}

    def closure(roots: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        todo = [r for r in roots if r in dists]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(d for d in dists[name][1] if d in dists)
        return seen

    machinery = closure(n for n in dists if n in MACHINERY or n.startswith("jupyter"))
    keep = closure(n for n in dists if n not in machinery)
    pins = tuple(f"{n}=={dists[n][0]}" for n in sorted(keep))
    return KernelEnv(data["prefix"], data["base_prefix"], data["python"], pins)



PYTHON_DIR = "/opt/llmscript/python"
PYTHON_LABEL = "llmscript.python"
#: Parts of a Python install no sandboxed script needs (and the build need not copy).
_SKIP = {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__",
         "site-packages", "pkgconfig"}


def python_base(env: KernelEnv, base: str, log: Log = print) -> str:
    """``base`` when its Python has the kernel's minor version, else a layer over it with
    the kernel's own Python (Linux hosts: the same machine code runs in the container).

    The kernel's base prefix is copied to /opt/llmscript/python, its libpython is made
    findable (ldconfig: the interpreter's RUNPATH names the host's folder) and it
    becomes the image's ``python3``.
    """
    from .facts import image_facts

    facts = image_facts(base)
    minor = ".".join(env.python.split(".")[:2])
    if ".".join(facts.python.split(".")[:2]) == minor:
        return base
    exe = Path(env.base_prefix) / "bin" / f"python{minor}"
    if not sys.platform.startswith("linux") or not exe.is_file():
        raise ConfigurationError(
            f"The kernel runs Python {env.python} and the sandbox image {base} has "
            f"{facts.python}: on this host the kernel's own Python cannot be copied in; run "
            f"the kernel on Python {'.'.join(facts.python.split('.')[:2])}, or build a base "
            "image with yours and pass it with --image")
    client = _client()
    base_id = str(client.images.get(base).id)
    key = _key(base_id, ["python", env.python, env.base_prefix])
    found = client.images.list(filters={"label": f"{KEY_LABEL}={key}"})
    if found:
        return str(found[0].tags[0] if found[0].tags else found[0].id)
    tag = f"{IMAGE_REPO}:py{minor}-{key[:12]}"
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmscript-python-") as tmp:
        ctx = Path(tmp)
        log(f"copying Python {env.python} from {env.base_prefix}")
        shutil.copytree(env.base_prefix, ctx / "python", symlinks=True,
                        ignore=lambda _d, names: [n for n in names if n in _SKIP
                                                  or n.endswith(".a")])
        site = f"{PYTHON_DIR}/lib/python{minor}/site-packages"
        labels = {f"{LABEL}.image": IMAGE_VERSION, KEY_LABEL: key, PYTHON_LABEL: env.python}
        (ctx / "Dockerfile").write_text(
            f"FROM {base_id}\n"
            f"COPY --chown=0:0 python/ {PYTHON_DIR}/\n"
            "USER 0:0\n"
            f"RUN echo {PYTHON_DIR}/lib > /etc/ld.so.conf.d/llmscript-python.conf && /sbin/ldconfig"
            f" && ln -sf {PYTHON_DIR}/bin/python{minor} /usr/local/bin/python3"
            f" && mkdir -p {site} && chmod -R a+rX {PYTHON_DIR}\n"
            f"USER {SCRIPT_UID}:{SCRIPT_UID}\n"
            f"LABEL {' '.join(f'{k}={json.dumps(v)}' for k, v in labels.items())}\n")
        _docker_build(client, ctx, tag, log)
    log(f"built {tag} (Python {env.python} over {base}) in {time.monotonic() - start:.0f} s")
    return tag
