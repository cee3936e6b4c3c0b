"""Version parity, optional engines and package lists, without Docker.

The image's side is an ``ImageFacts`` as the image's probe reports it (the probe
itself runs in ``test_sandbox_env.py``); the kernel's side is this test process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from llmscript_magic._errors import ConfigurationError
from llmscript_magic._pipeline.parity import environment_text, parity_check
from llmscript_magic._pipeline.validate import validate
from llmscript_magic._sandbox.facts import ImageFacts
from llmscript_magic._sandbox.layers import check_requirement, merge, read_requirements

PY = ".".join(map(str, sys.version_info[:3]))


def facts(pandas: str, numpy: str, python: str = PY, **more: str) -> ImageFacts:
    return ImageFacts.from_json({
        "python": python,
        "dists": {"pandas": pandas, "numpy": numpy, "python-dateutil": "2.8.2", **more},
        "requires": {"pandas": ["numpy>=1.22", "python-dateutil"]},
        "modules": {"pandas": ["pandas"], "numpy": ["numpy"], "dateutil": ["python-dateutil"],
                    "sklearn": ["scikit-learn"]},
    })


def test_a_minor_difference_warns_with_both_versions_and_the_fix() -> None:
    check = parity_check(["pandas", "numpy", "json"], facts("1.5.3", np.__version__),
                         image="", refuse=False)
    assert check.status == "warn"
    assert f"sandbox pandas 1.5.3, kernel pandas {pd.__version__}: results may differ" \
        in check.message
    assert "numpy" not in check.message.split(":")[0]
    assert "%llmscript sandbox build --like-kernel" in check.message
    refused = parity_check(["pandas"], facts("1.5.3", np.__version__), image="", refuse=True)
    assert refused.status == "fail" and "strict_versions" in refused.message


def test_same_minor_passes_and_python_minor_is_compared() -> None:
    patch = pd.__version__.rsplit(".", 1)[0] + ".999"
    assert parity_check(["pandas"], facts(patch, np.__version__), image="",
                        refuse=False).status == "pass"
    other = f"3.{sys.version_info[1] - 1}.0"
    check = parity_check([], facts(pd.__version__, np.__version__, python=other), image="",
                         refuse=False)
    assert check.status == "warn" and f"sandbox Python {other}, kernel Python {PY}" \
        in check.message


def test_the_prompt_names_exact_versions_and_only_what_is_there() -> None:
    text = environment_text(facts("1.5.3", "1.24.2", python="3.11.2", seaborn="0.13.2"))
    assert "Python 3.11 with numpy 1.24.2, pandas 1.5.3, seaborn 0.13.2" in text
    assert "matplotlib" not in text and "dateutil" not in text  # absent; a dependency
    assert "no other third-party package" in text


def test_optional_engines_are_checked_like_imports() -> None:
    code = ("import pandas as pd\ndf = pd.read_excel('a.xlsx')\ndf.to_parquet('b.parquet')\n"
            "df.to_parquet('c.parquet', engine='fastparquet')\n")
    image = frozenset({"pandas", "numpy", "json"})
    failures = validate(code, available=image).failures
    assert [f.line for f in failures] == [2, 3]
    assert "`%llmscript sandbox require openpyxl`" in failures[0].message
    assert "pyarrow or fastparquet" in failures[1].message
    with_pyarrow = validate(code, available=image | {"openpyxl", "pyarrow"}).failures
    assert [f.message for f in with_pyarrow] == [
        "to_parquet (line 4) needs fastparquet for Parquet files, and the sandbox image has "
        "none: ask for code without it, or add it with `%llmscript sandbox require "
        "fastparquet`"]
    assert validate(code, available=None).ok  # no image list: nothing to check against


def test_a_missing_import_names_the_package_to_add() -> None:
    report = validate("from sklearn.linear_model import LinearRegression\n",
                      available=frozenset({"pandas"}))
    assert "`%llmscript sandbox require scikit-learn`" in report.failures[0].message


def test_package_lists_are_checked_merged_and_read(tmp_path: Path) -> None:
    assert check_requirement(" pandas == 2.2.3 ") == "pandas==2.2.3"
    for bad in ["--index-url=x", "pkg @ https://x/y.whl", "a b", "-e ."]:
        with pytest.raises(ConfigurationError, match="write NAME or NAME==VERSION"):
            check_requirement(bad)
    assert merge(["pandas==1.5.3", "Seaborn"], ["pandas==3.1.1"]) == ("pandas==3.1.1",
                                                                      "Seaborn")
    req = tmp_path / "requirements.txt"
    req.write_text("# data\nseaborn==0.13.2  # plots\n\nopenpyxl\n")
    assert read_requirements(str(req)) == ["seaborn==0.13.2", "openpyxl"]
    req.write_text("seaborn\n--extra-index-url http://x\n")
    with pytest.raises(ConfigurationError, match="line 2"):
        read_requirements(str(req))


def test_sandbox_magic_usage_is_one_line(ip: InteractiveShell,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    result = ip.run_cell("%llmscript sandbox frobnicate")
    assert not result.success
    err = capsys.readouterr().err
    assert "%llmscript sandbox require NAME" in err and "Traceback" not in err
    result = ip.run_cell("%llmscript sandbox require 'x y'")
    assert "write NAME or NAME==VERSION" in capsys.readouterr().err
