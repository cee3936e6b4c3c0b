"""The sandbox runs the kernel's environment (real Docker, real pip, real wheels).

A kernel environment is made once per session: a venv with this test process's own
pandas and numpy (3.x / 2.x, where the default image has Debian's 1.5.3 / 1.24).
``llmscript sandbox build --like-kernel --python VENV`` then gives an image with its
versions, and one more build adds five packages as one layer on top. Both are built
once per package list, then found again by their label (also across sessions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from llmscript_magic import generate
from llmscript_magic._sandbox import DEFAULT_IMAGE, run
from llmscript_magic._sandbox.facts import image_facts
from llmscript_magic.testing import FakeProvider

pytestmark = pytest.mark.docker

EXTRA = ["seaborn", "scikit-learn", "openpyxl", "pyarrow", "statsmodels"]
DATES = ["2024-01-05", "2024/01/06", "Jan 7 2024", "8 January 2024", "2024-01-09T10:30",
         "not a date", "", "2024-13-45", "01/10/2024", "20240111"]
CLEAN = """\
import json
import pandas as pd
col = pd.Series({dates!r})
parsed = pd.to_datetime(col, format="mixed", errors="coerce")
print(json.dumps([None if pd.isna(v) else v.isoformat() for v in parsed]))
"""


def _cli(*args: str, env: dict[str, str]) -> tuple[str, str, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", *args],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr, time.monotonic() - start


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An environment whose records and facts stay out of the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("xdg")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield env
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def kernel_venv(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Path:
    """A kernel environment with this process's pandas and numpy (and what they need)."""
    venv = tmp_path_factory.mktemp("kernel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", site,
                    f"pandas=={pd.__version__}", f"numpy=={np.__version__}"], check=True)
    return python


@pytest.fixture(scope="session")
def like_kernel(kernel_venv: Path, env_cache: dict[str, str]) -> str:
    """`llmscript sandbox build --like-kernel` for the venv: the image's tag."""
    out, _, _ = _cli("sandbox", "build", "--like-kernel", "--python", str(kernel_venv),
                     env=env_cache)
    return out.split("sandbox image ready: ")[1].split()[0]


@pytest.fixture(scope="session")
def with_extras(like_kernel: str, kernel_venv: Path,
                env_cache: dict[str, str]) -> tuple[str, float, str]:
    """Five more packages for the same environment: (tag, seconds, build log)."""
    out, log, seconds = _cli("sandbox", "build", "--packages", *EXTRA, "--python",
                             str(kernel_venv), env=env_cache)
    print(f"\n[layer of {len(EXTRA)} packages: {seconds:.1f} s]")
    return out.split("sandbox image ready: ")[1].split()[0], seconds, log


def _versions(image: str) -> list[str]:
    result = run("import sys, pandas, numpy\n"
                 "print(sys.version_info[:2], pandas.__version__, numpy.__version__)",
                 image=image)
    assert result.ok, result.stderr
    return result.stdout.split()


def test_like_kernel_runs_the_kernels_versions_and_gives_the_kernels_dates(
        like_kernel: str) -> None:
    assert _versions(like_kernel)[-2:] == [pd.__version__, np.__version__]
    assert _versions(DEFAULT_IMAGE)[-2:] != [pd.__version__, np.__version__]

    in_kernel = pd.to_datetime(pd.Series(DATES), format="mixed", errors="coerce")
    expected = [None if pd.isna(v) else v.isoformat() for v in in_kernel]
    assert sum(v is not None for v in expected) >= 6  # the kernel parses most of them
    sandbox = run(CLEAN.format(dates=DATES), image=like_kernel)
    assert sandbox.ok, sandbox.stderr
    assert json.loads(sandbox.stdout) == expected
    # The default image's pandas takes "mixed" for a strptime format: every date is lost.
    old = run(CLEAN.format(dates=DATES), image=DEFAULT_IMAGE)
    assert old.ok and json.loads(old.stdout) != expected


def test_the_same_list_builds_nothing(like_kernel: str, kernel_venv: Path,
                                      env_cache: dict[str, str], docker_client: Any) -> None:
    before = docker_client.images.get(like_kernel).id
    out, log, _ = _cli("sandbox", "build", "--like-kernel", "--python", str(kernel_venv),
                       env=env_cache)
    assert "already has these" in log and "docker build" not in log
    assert docker_client.images.get(out.split("ready: ")[1].split()[0]).id == before


def test_added_packages_are_one_layer_and_run(with_extras: tuple[str, float, str],
                                               like_kernel: str, docker_client: Any) -> None:
    tag, _, log = with_extras
    # built now, or by an earlier session on this engine (found again by its label)
    assert "one layer over" in log or "already has these" in log
    lower = docker_client.images.get(like_kernel).attrs["RootFS"]["Layers"]
    upper = docker_client.images.get(tag).attrs["RootFS"]["Layers"]
    assert upper[:-1] == lower and len(upper) == len(lower) + 1
    labels = docker_client.images.get(tag).labels
    assert set(EXTRA) <= {p.split("==")[0] for p in json.loads(labels["llmscript.packages"])}
    code = """\
import io
import numpy as np
import pandas as pd
import seaborn as sns
import matplotlib.pyplot as plt
from sklearn.linear_model import LinearRegression
import statsmodels.api as sm

df = pd.DataFrame({"x": np.arange(20.0), "g": list("ab") * 10})
df["y"] = 3 * df["x"] + 1
sns.scatterplot(data=df, x="x", y="y", hue="g")
model = LinearRegression().fit(df[["x"]], df["y"])
ols = sm.OLS(df["y"], sm.add_constant(df["x"])).fit()
df.to_excel("t.xlsx", index=False)
df.to_parquet("t.parquet")
back = pd.read_excel("t.xlsx")
same = pd.read_parquet("t.parquet")
print(round(model.coef_[0], 6), round(ols.params["x"], 6), len(back), len(same),
      pd.__version__)
"""
    result = run(code, image=tag)
    assert result.ok, result.stderr[-1500:]
    assert result.stdout.split() == ["3.0", "3.0", "20", "20", pd.__version__]
    assert len(result.figures) == 1


def test_a_version_mismatch_is_told_and_strict_versions_refuses(
        fake: FakeProvider, like_kernel: str, env_cache: dict[str, str]) -> None:
    code = "```python\nimport pandas as pd\nprint(pd.__version__)\n```"
    old = image_facts(DEFAULT_IMAGE).dists["pandas"]
    fake.enqueue(code)
    gen = generate("Print the pandas version.", model="fake:fake", cache=False, run=True,
                   image=DEFAULT_IMAGE)
    warning = f"sandbox pandas {old}, kernel pandas {pd.__version__}: results may differ"
    assert any(c.name == "parity" and c.status == "warn" and warning in c.message
               for c in gen.report.checks)
    assert gen.last.run is not None and warning in (gen.last.run.warning or "")
    assert gen.last.run.stdout.strip() == old  # it still ran, and the user was told
    assert f"pandas {old}" in gen.prompt.user and "Python 3.11" in gen.prompt.user

    fake.enqueue(code)
    gen = generate("Print the pandas version.", model="fake:fake", cache=False, run=True,
                   image=DEFAULT_IMAGE, strict_versions=True, retries=2)
    assert gen.last.run is None and fake.pending() == 0  # refused, not sent for repair
    assert any(c.name == "parity" and c.status == "fail" for c in gen.report.checks)

    fake.enqueue(code)
    gen = generate("Print the pandas version.", model="fake:fake", cache=False, run=True,
                   image=like_kernel, strict_versions=True)
    assert gen.last.run is not None and gen.last.run.stdout.strip() == pd.__version__
    assert [c for c in gen.report.checks if c.name == "parity"] == []  # nothing differs
    assert "results may differ" not in (gen.last.run.warning or "")
    assert f"pandas {pd.__version__}" in gen.prompt.user


def test_missing_engine_and_package_name_the_command(fake: FakeProvider) -> None:
    fake.enqueue("```python\nimport pandas as pd\ndf = pd.read_excel('a.xlsx')\n```")
    gen = generate("Read a.xlsx.", model="fake:fake", cache=False, retries=0,
                   image=DEFAULT_IMAGE)
    assert any("`%llmscript sandbox require openpyxl`" in c.message
               for c in gen.report.failures)
    name = "sea" + "born"  # only the run can tell
    fake.enqueue(f"```python\nimport importlib\nimportlib.import_module({name!r} * 1)\n```")
    gen = generate("Import it.", model="fake:fake", cache=False, retries=0, run=True,
                   image=DEFAULT_IMAGE)
    assert any(c.name == "run" and "`%llmscript sandbox require seaborn`" in c.message
               for c in gen.report.failures)


def test_require_in_a_notebook_builds_and_later_runs_use_it(
        ip: Any, fake: FakeProvider, env_cache: dict[str, str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import tabulate  # the kernel has it; the default image does not

    from llmscript_magic._sandbox import layers

    monkeypatch.setattr(layers, "_session", [""])  # this kernel's image, for this test only
    assert "tabulate" not in image_facts(DEFAULT_IMAGE).dists
    assert ip.run_cell("%llmscript sandbox require tabulate").success
    out = capsys.readouterr()
    assert "runs from this kernel use it" in out.out
    tag = out.out.split("sandbox image ")[1].split(": ")[0]
    assert f"tabulate=={tabulate.__version__}" in json.dumps(
        layers.env_packages(sys.prefix)), out.err
    fake.enqueue("```python\nimport tabulate\nprint(tabulate.__version__)\n```")
    result = ip.run_cell("%%generate --model fake:fake --no-cache --no-insert --run\n"
                         "Print the tabulate version.")
    assert result.success, result.error_in_exec
    gm = ip.magics_manager.registry["GenerateMagics"]
    gen = gm.session.history[-1]
    assert gen.last.run is not None and gen.last.run.stdout.strip() == tabulate.__version__
    assert gen.last.run.image == tag


def test_a_kernel_on_another_python_gets_its_own_python(
        tmp_path: Path, env_cache: dict[str, str], docker_client: Any) -> None:
    base_minor = image_facts(DEFAULT_IMAGE).python.rsplit(".", 1)[0]
    minor = int(base_minor.split(".")[1])
    others = sorted((p for p in Path("/root/.pyenv/versions").glob("3.*/bin/python3")
                     if not p.parent.parent.name.startswith(base_minor + ".")),
                    key=lambda p: abs(int(p.parent.parent.name.split(".")[1]) - minor - 0.5))
    if not others:
        pytest.skip(f"no Python other than {base_minor} on this host")
    venv = tmp_path / "venv"
    subprocess.run([str(others[0]), "-m", "venv", "--without-pip", str(venv)], check=True)
    out, _, _ = _cli("sandbox", "build", "--like-kernel", "--packages", "tabulate",
                       "--python", str(venv / "bin" / "python"), env=env_cache)
    tag = out.split("sandbox image ready: ")[1].split()[0]
    kernel = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "import platform; print(platform.python_version())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    result = run("import platform, tabulate\nprint(platform.python_version())", image=tag)
    assert result.ok, result.stderr
    assert result.stdout.strip() == kernel != image_facts(DEFAULT_IMAGE).python
