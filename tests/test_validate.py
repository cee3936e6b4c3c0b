"""The static checklist the user sees under a generated cell."""

from __future__ import annotations

import ast
import json

import pytest

from llmscript_magic._pipeline.validate import (
    Check,
    ValidationReport,
    check_imports,
    check_syntax,
    dynamic_imports,
    imported_modules,
    scan_risks,
    validate,
)

IMAGE = frozenset({"os", "sys", "json", "csv", "pathlib", "subprocess", "shutil", "pandas",
                   "numpy", "importlib", "re", "io", "builtins"})


def risks(code: str, *, strict: bool = False) -> set[tuple[str, int]]:
    return {(c.name, c.line or 0) for c in scan_risks(ast.parse(code), strict=strict)
            if c.status != "pass"}


# -- syntax -------------------------------------------------------------------
def test_syntax_pass() -> None:
    check = check_syntax("def f(x):\n    return x\n")
    assert (check.name, check.status, check.layer) == ("syntax", "pass", "syntax")


def test_syntax_error_names_line_and_column() -> None:
    check = check_syntax("x = 1\nprint(x\ny = 2\n")
    assert check.status == "fail"
    assert check.line == 2 and check.col is not None
    assert check.message.startswith(f"Syntax error at line 2, column {check.col}: ")
    assert "never closed" in check.message


def test_syntax_error_in_indentation() -> None:
    check = check_syntax("def f():\nreturn 1\n")
    assert (check.status, check.line) == ("fail", 2)
    assert "indented block" in check.message


def test_null_byte_is_a_syntax_failure_not_a_crash() -> None:
    assert check_syntax("x = 1\0").status == "fail"


# -- imports ------------------------------------------------------------------
def test_imported_modules_every_form() -> None:
    code = (
        "import os.path\n"                                   # 1
        "from collections.abc import Mapping\n"              # 2
        "from . import sibling\n"                            # 3 relative: ignored
        "from .pkg import thing\n"                           # 4 relative: ignored
        "json = __import__('json')\n"                        # 5
        "import importlib\n"                                 # 6
        "yaml = importlib.import_module('yaml.loader')\n"    # 7
        "from importlib import import_module as im\n"        # 8
        "toml = im('tomllib')\n"                             # 9
        "dyn = __import__(name)\n"                           # 10 dynamic: separate
        "import os\n"                                        # 11 first line wins
        "def f():\n    import numpy as np\n    return np\n"  # 13
    )
    tree = ast.parse(code)
    assert imported_modules(tree) == {"os": 1, "collections": 2, "json": 5, "importlib": 6,
                                      "yaml": 7, "tomllib": 9, "numpy": 13}
    assert dynamic_imports(tree) == [10]


def test_missing_module_fails_with_fix() -> None:
    tree = ast.parse("import json\n\nimport pandas as pd\nimport polars\n")
    checks = check_imports(tree, available=IMAGE)
    assert [(c.status, c.line) for c in checks] == [("fail", 4)]
    assert checks[0].message == ("polars is not in the sandbox image (line 4): ask for code "
                                 "without it, or add it to the sandbox with "
                                 "`%llmscript sandbox require polars`")


def test_stdlib_counts_only_when_the_image_lists_it() -> None:
    checks = check_imports(ast.parse("import tomllib\n"), available=IMAGE)
    assert [c.status for c in checks] == ["fail"]
    assert checks[0].message.startswith("tomllib is not in the sandbox image")


def test_all_available_gives_one_pass_listing_modules() -> None:
    checks = check_imports(ast.parse("import pandas as pd\nimport csv\nimport csv.x\n"),
                           available=IMAGE)
    assert len(checks) == 1
    assert checks[0].status == "pass"
    assert "csv, pandas" in checks[0].message


def test_no_imports_passes() -> None:
    (check,) = check_imports(ast.parse("print(1)\n"), available=IMAGE)
    assert (check.status, check.message) == ("pass", "no imports")


def test_deny_list_fails() -> None:
    checks = check_imports(ast.parse("import json\nimport subprocess\n"), available=IMAGE,
                           deny={"subprocess"})
    assert [(c.status, c.line) for c in checks] == [("fail", 2)]
    assert checks[0].message.startswith("subprocess is on the deny list (line 2): ")


def test_allow_list_fails_everything_else() -> None:
    code = "import json\nimport csv\nfrom os import path\n"
    checks = check_imports(ast.parse(code), available=None, allow={"json"})
    assert [(c.status, c.line) for c in checks] == [("fail", 2), ("fail", 3)]
    assert checks[0].message.startswith("csv is not on the allow list (line 2): ")


def test_deny_wins_over_allow() -> None:
    checks = check_imports(ast.parse("import os\n"), allow={"os"}, deny={"os"})
    assert "deny list" in checks[0].message


def test_guarded_optional_import_only_warns() -> None:
    code = "try:\n    import ujson as json\nexcept ImportError:\n    import json\n"
    checks = check_imports(ast.parse(code), available=IMAGE)
    assert [(c.status, c.line) for c in checks] == [("warn", 2), ("pass", None)]
    assert "try/except ImportError" in checks[0].message


def test_import_in_except_branch_is_not_guarded() -> None:
    code = "try:\n    import json\nexcept ImportError:\n    import simplejson\n"
    checks = check_imports(ast.parse(code), available=IMAGE)
    assert [(c.status, c.line) for c in checks] == [("fail", 4)]


def test_type_checking_imports_and_future_are_ignored() -> None:
    code = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import polars\n")
    checks = check_imports(ast.parse(code), available=IMAGE | {"typing"})
    assert [c.status for c in checks] == ["pass"]


# -- risks --------------------------------------------------------------------
RISK_CASES = [
    ("subprocess-run", "import subprocess\nsubprocess.run(['ls'])\n", {("risk:process", 2)}),
    ("subprocess-alias", "import subprocess as sp\nsp.check_output(['id'])\n",
     {("risk:process", 2)}),
    ("from-subprocess", "from subprocess import Popen as P\nP(['x'])\n", {("risk:process", 2)}),
    ("shell-true", "import subprocess\nsubprocess.call('ls | wc', shell=True)\n",
     {("risk:shell", 2)}),
    ("os-system", "import os\nos.system('id')\n", {("risk:shell", 2)}),
    ("os-system-alias", "from os import system as s\ns('id')\n", {("risk:shell", 2)}),
    ("os-popen", "import os as o\no.popen('ls').read()\n", {("risk:shell", 2)}),
    ("os-exec", "import os\nos.execv('/bin/sh', ['sh'])\n", {("risk:process", 2)}),
    ("os-spawn", "import os\nos.spawnlp(os.P_WAIT, 'ls', 'ls')\n", {("risk:process", 2)}),
    ("os-fork", "import os\npid = os.fork()\n", {("risk:process", 2)}),
    ("pty", "import pty\npty.spawn('/bin/sh')\n", {("risk:process", 2)}),
    ("asyncio-shell", "import asyncio\nasyncio.create_subprocess_shell('ls')\n",
     {("risk:shell", 2)}),
    ("eval", "x = eval(input())\n", {("risk:eval", 1)}),
    ("exec", "exec('print(1)')\n", {("risk:eval", 1)}),
    ("compile", "code = compile('1', 'f', 'eval')\n", {("risk:eval", 1)}),
    ("builtins-eval", "import builtins\nbuiltins.eval('1')\n", {("risk:eval", 2)}),
    ("eval-renamed", "run = eval\nrun('1')\n", {("risk:eval", 1), ("risk:eval", 2)}),
    ("socket", "import socket\ns = socket.socket()\n", {("risk:network", 2)}),
    ("urllib", "import urllib.request\nurllib.request.urlopen('http://x')\n",
     {("risk:network", 2)}),
    ("urlopen-from", "from urllib.request import urlopen\nurlopen('http://x')\n",
     {("risk:network", 2)}),
    ("http-client", "import http.client\nhttp.client.HTTPSConnection('x')\n",
     {("risk:network", 2)}),
    ("requests", "import requests\nrequests.get('https://api.example.com')\n",
     {("risk:network", 2)}),
    ("httpx", "import httpx\nhttpx.Client()\n", {("risk:network", 2)}),
    ("aiohttp", "import aiohttp\naiohttp.ClientSession()\n", {("risk:network", 2)}),
    ("ftplib", "from ftplib import FTP\nFTP('host')\n", {("risk:network", 2)}),
    ("smtplib", "import smtplib\nsmtplib.SMTP('mail')\n", {("risk:network", 2)}),
    ("unused-network-import", "import requests\nprint(1)\n", {("risk:network", 1)}),
    ("url-argument", "import pandas as pd\npd.read_csv('https://x.org/a.csv')\n",
     {("risk:network", 2)}),
    ("os-remove", "import os\nos.remove('a.txt')\n", {("risk:delete", 2)}),
    ("os-unlink", "import os\nos.unlink('a')\n", {("risk:delete", 2)}),
    ("os-rmdir", "import os\nos.rmdir('d')\n", {("risk:delete", 2)}),
    ("rmtree", "import shutil\nshutil.rmtree('build')\n", {("risk:delete", 2)}),
    ("rmtree-from", "from shutil import rmtree\nrmtree('build')\n", {("risk:delete", 2)}),
    ("path-unlink", "from pathlib import Path\nPath('a.txt').unlink()\n", {("risk:delete", 2)}),
    ("path-rmdir", "from pathlib import Path\np = Path('d')\np.rmdir()\n", {("risk:delete", 3)}),
    ("ctypes", "import ctypes\nctypes.CDLL('libc.so.6')\n", {("risk:ffi", 2)}),
    ("cffi", "from cffi import FFI\nFFI()\n", {("risk:ffi", 2)}),
    ("open-abs-write", "open('/etc/passwd', 'w').write('x')\n", {("risk:write", 1)}),
    ("open-dotdot-append", "with open('../notes.txt', mode='a') as f:\n    f.write('x')\n",
     {("risk:write", 1)}),
    ("open-home-write", "open('~/.bashrc', 'a+')\n", {("risk:write", 1)}),
    ("open-windows-abs", "open('C:\\\\x.txt', 'wb')\n", {("risk:write", 1)}),
    ("path-write-text", "from pathlib import Path\nPath('/..').write_text('x')\n",
     {("risk:write", 2)}),
    ("path-div-write", "import pathlib\n(pathlib.Path('/etc') / 'cron.d').write_bytes(b'')\n",
     {("risk:write", 2)}),
    ("path-open-write", "from pathlib import Path\nPath('../x').open('w')\n", {("risk:write", 2)}),
    ("copy-outside", "import shutil\nshutil.copy('a', '/usr/local/bin/a')\n",
     {("risk:write", 2)}),
    ("dataframe-save-outside", "import pandas as pd\npd.DataFrame().to_csv('/srv/out.csv')\n",
     {("risk:write", 2)}),
    ("savefig-outside", "import matplotlib.pyplot as plt\nplt.savefig('../fig.png')\n",
     {("risk:write", 2)}),
    ("environ", "import os\nkey = os.environ['API_KEY']\n", {("risk:env", 2)}),
    ("environ-get", "import os\nos.environ.get('HOME')\n", {("risk:env", 2)}),
    ("getenv", "import os\nos.getenv('TOKEN')\n", {("risk:env", 2)}),
    ("environ-from", "from os import environ\nprint(environ)\n", {("risk:env", 2)}),
    ("obfuscated-import", "__import__('o'+'s').system('id')\n",
     {("risk:dynamic", 1), ("risk:shell", 1)}),
    ("obfuscated-getattr-eval", "getattr(__builtins__, 'ev'+'al')('1+1')\n",
     {("risk:dynamic", 1), ("risk:eval", 1)}),
    ("getattr-module-fstring", "import os\nf = getattr(os, f\"{'sys'}tem\")\nf('id')\n",
     {("risk:dynamic", 2), ("risk:shell", 2), ("risk:shell", 3)}),
    ("join-chr-import", "m = __import__(''.join(['sub', 'process']))\nm.run(['x'])\n",
     {("risk:dynamic", 1), ("risk:process", 1), ("risk:process", 2)}),
    ("reversed-name", "__import__('so'[::-1]).popen('id')\n", {("risk:dynamic", 1),
                                                                ("risk:shell", 1)}),
    ("chr-name", "__import__(chr(111) + chr(115)).system('id')\n",
     {("risk:dynamic", 1), ("risk:shell", 1)}),
    ("import-constant-resolves", "__import__('subprocess').run(['x'])\n", {("risk:process", 1)}),
    ("importlib-dynamic", "import importlib\nm = importlib.import_module(name)\n",
     {("risk:dynamic", 2)}),
    ("importlib-folded", "import importlib\nimportlib.import_module('sub' + 'process').run([])\n",
     {("risk:dynamic", 2), ("risk:process", 2)}),
    ("globals-lookup", "globals()['ev' + 'al']('1')\n", {("risk:dynamic", 1)}),
    ("vars-lookup", "vars()['x']\n", {("risk:dynamic", 1)}),
    ("builtins-name", "b = __builtins__\n", {("risk:dynamic", 1)}),
    ("subclasses", "().__class__.__bases__[0].__subclasses__()\n", {("risk:dynamic", 1)}),
    ("func-globals", "def f():\n    pass\nf.__globals__['os']\n", {("risk:dynamic", 3)}),
    ("star-import", "from subprocess import *\nrun(['ls'])\n", {("risk:process", 1)}),
    ("assigned-alias", "import subprocess\nrun = subprocess.run\nrun(['a'])\n",
     {("risk:process", 2), ("risk:process", 3)}),
]


@pytest.mark.parametrize("code,expected", [(c, e) for _, c, e in RISK_CASES],
                         ids=[i for i, _, _ in RISK_CASES])
def test_risk_findings(code: str, expected: set[tuple[str, int]]) -> None:
    assert risks(code) == expected


SAFE = [
    ("plain-script", "import csv\nwith open('data.csv') as f:\n    print(list(csv.reader(f)))\n"),
    ("re-compile", "import re\npat = re.compile(r'\\d+')\n"),
    ("local-write", "open('out.txt', 'w').write('x')\nopen('sub/dir/o.csv', 'a')\n"),
    ("read-absolute", "open('/etc/hostname').read()\nopen('/data/in.csv', 'rb')\n"),
    ("path-join-local", "from pathlib import Path\n(Path('out') / 'a.txt').write_text('x')\n"),
    ("local-save", "import pandas as pd\npd.DataFrame().to_csv('out/totals.csv')\n"),
    ("own-eval-function", "def evaluate(x):\n    return x\nevaluate(1)\n"),
    ("shadowed-compile", "def compile(x):\n    return x\ncompile(3)\n"),
    ("getattr-object", "class A:\n    x = 1\nname = 'x'\nprint(getattr(A(), name))\n"),
    ("os-path", "import os\nprint(os.path.join('a', 'b'), os.getcwd(), os.listdir('.'))\n"),
    ("strings-mentioning", "print('subprocess.run os.system eval(x)')\n"),
    ("json-dict", "import json\nd = json.loads('{}')\nprint(d.get('k'))\n"),
]


@pytest.mark.parametrize("code", [c for _, c in SAFE], ids=[i for i, _ in SAFE])
def test_no_false_alarms(code: str) -> None:
    checks = scan_risks(ast.parse(code))
    assert [(c.name, c.status) for c in checks] == [("risk", "pass")]


def test_risk_message_names_the_call_line_and_the_real_boundary() -> None:
    (check,) = scan_risks(ast.parse("import subprocess as sp\n\nsp.run(['ls'])\n"))
    assert check.status == "warn" and check.layer == "risk"
    assert (check.line, check.col) == (3, 1)
    assert check.message == "sp.run (= subprocess.run) starts a new process (line 3)"
    text = validate("import subprocess as sp\nsp.run(['ls'])\nsp.call('x')\n").as_text()
    assert text.count("the sandbox, not this check, is the security boundary") == 1


def test_clean_report_also_says_the_sandbox_is_the_boundary() -> None:
    (check,) = scan_risks(ast.parse("print(1)\n"))
    assert check.status == "pass"
    assert validate("print(1)\n").as_text().endswith(
        "(risk checks are informational only: the sandbox, not this check, is the security "
        "boundary)")


def test_strict_turns_risks_into_failures() -> None:
    checks = scan_risks(ast.parse("import os\nos.system('x')\n"), strict=True)
    assert [(c.name, c.status) for c in checks] == [("risk:shell", "fail")]


# -- validate and the report ----------------------------------------------------
def test_validate_runs_all_static_layers_in_order() -> None:
    code = "import os\nimport pandas as pd\nos.system('ls')\n"
    report = validate(code, available=IMAGE)
    assert [c.name for c in report.checks] == ["syntax", "imports", "risk:shell"]
    assert report.ok
    assert [c.name for c in report.warnings] == ["risk:shell"]
    assert report.summary_line() == "3 checks: 2 pass, 1 warn"


def test_validate_stops_after_a_syntax_error() -> None:
    report = validate("import nothere\nos.system(\n", available=IMAGE)
    assert [c.name for c in report.checks] == ["syntax"]
    assert not report.ok
    assert report.failures == report.checks
    assert report.summary_line() == "1 check: 1 fail"


def test_validate_strict_and_import_policy() -> None:
    code = "import requests\nrequests.get('https://x')\n"
    report = validate(code, available=IMAGE, deny_imports={"requests"}, strict=True)
    assert not report.ok
    assert {c.name for c in report.failures} == {"imports", "risk:network"}
    report = validate(code, allow_imports={"requests"})
    assert report.ok and [c.status for c in report.checks] == ["pass", "pass", "warn"]


def test_clean_script_all_pass() -> None:
    report = validate("import json\nprint(json.dumps([1]))\n", available=IMAGE)
    assert report.ok and not report.warnings
    assert report.summary_line() == "3 checks: 3 pass"


def test_report_text_is_a_checklist() -> None:
    report = ValidationReport()
    report.add(Check("syntax", "pass", "the code parses as Python"))
    report.add(Check("risk:env", "warn", "reads env"))
    report.add(Check("run", "fail", "exited with status 1", layer="run"))
    assert report.as_text().splitlines() == [
        "3 checks: 1 pass, 1 warn, 1 fail",
        "✓ syntax: the code parses as Python",
        "! risk:env: reads env",
        "✗ run: exited with status 1",
        "(risk checks are informational only: the sandbox, not this check, is the security "
        "boundary)",
    ]
    assert not report.ok


def test_report_round_trips_through_json_metadata() -> None:
    report = validate("import os\nos.getenv('X')\nprint(\n".replace("print(\n", ""),
                      available=IMAGE)
    report.add(Check("check", "fail", "len(rows) > 0 is false", layer="check"))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["summary"] == report.summary_line()
    again = ValidationReport.from_dict(data)
    assert again == report
    assert again.checks[2].line == 2


def test_from_dict_ignores_unknown_keys() -> None:
    data = {"checks": [{"name": "syntax", "status": "pass", "message": "ok", "layer": "syntax",
                        "added_later": 1}]}
    assert ValidationReport.from_dict(data).checks == [Check("syntax", "pass", "ok")]


def test_check_layer_defaults_from_name_and_rejects_bad_status() -> None:
    assert Check("risk:network", "warn", "m").layer == "risk"
    assert Check("run", "pass", "m", layer="sandbox").layer == "sandbox"
    with pytest.raises(ValueError):
        Check("x", "ok", "m")  # type: ignore[arg-type]


def test_empty_report() -> None:
    report = ValidationReport()
    assert report.ok and report.summary_line() == "0 checks"


def test_deeply_nested_code_is_reported_not_crashed() -> None:
    deep = "x = " + " + ".join(["'a'"] * 900) + "\n"  # parses, but too deep to walk recursively
    report = validate(deep)
    assert [(c.name, c.status) for c in report.checks][-1] == ("risk:unscanned", "warn")
    assert validate(deep, strict=True).failures[-1].name == "risk:unscanned"
    too_deep = "x = " + " + ".join(["'a'"] * 5000) + "\n"
    check = check_syntax(too_deep)
    if check.status == "pass":  # 3.10's and 3.13's parsers take it: reported, not crashed
        assert [(c.name, c.status) for c in validate(too_deep).checks][-1] == \
            ("risk:unscanned", "warn")
        return
    assert (check.status, check.line) == ("fail", 1)  # 3.11's, 3.12's parser gives up
    assert "nested too deeply" in check.message


# -- one parse: validation reuses the tree extraction made (issue 15) ----------------
@pytest.mark.parametrize("code", [c for _, c, _ in RISK_CASES] + [c for _, c in SAFE],
                         ids=[i for i, _, _ in RISK_CASES] + [i for i, _ in SAFE])
def test_a_given_tree_gives_the_same_checklist(code: str) -> None:
    fresh = validate(code, available=IMAGE, strict=True).to_dict()
    assert validate(code, tree=ast.parse(code), available=IMAGE, strict=True).to_dict() == fresh


def test_reply_to_checklist_points_at_the_cell_lines() -> None:
    from llmscript_magic._pipeline.extract import extract_code

    reply = ("<think>\nThe user wants the files listed. os.system('ls') is easiest.\n</think>\n\n"
             "```python\n\n\n!pip install rich\nimport os\n\nos.system('ls')\n```\n")
    found = extract_code(reply)
    assert found.code == "import os\n\nos.system('ls')\n"
    report = validate(found.code, tree=found.tree, available=IMAGE)
    assert [(c.name, c.line) for c in report.checks] == [
        ("syntax", None), ("imports", None), ("risk:shell", 3)]


@pytest.mark.parametrize("code,status", [
    ("try: import polars\nexcept ImportError: polars = None\n", "warn"),
    ("try:\n    try:\n        pass\n    except KeyError:\n        import polars\n"
     "except ModuleNotFoundError:\n    pass\n", "warn"),
    ("try:\n    pass\nexcept ImportError:\n    try:\n        import polars\n"
     "    except ValueError:\n        pass\n", "fail"),
    ("try:\n    pass\nfinally:\n    import polars\n", "fail"),
    ("import typing\nif typing.TYPE_CHECKING:\n    import polars\n", "pass"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    import polars\n",
     "fail"),
], ids=["one-line-try", "nested-in-guarded-body", "in-handler", "in-finally",
        "typing-attribute", "type-checking-else"])
def test_guarded_and_type_checking_imports(code: str, status: str) -> None:
    checks = check_imports(ast.parse(code), available=IMAGE | {"typing"})
    assert checks[0].status == status, checks


def test_a_long_script_is_scanned_without_recursion() -> None:
    # 3,000 statements deep in one function body: wide, not deep, so it is scanned fully
    body = "".join(f"    x{i} = {i}\n" for i in range(3000))
    code = f"import os\ndef f():\n{body}    os.system('ls')\n"
    report = validate(code)
    assert [(c.name, c.line) for c in report.warnings] == [("risk:shell", 3003)]


@pytest.mark.parametrize(("reply", "code", "line"), [
    # joined: the walk that compares the blocks' names also moved their line numbers
    ("Step 1:\n```python\nimport os\n```\nStep 2:\n```python\nname = 'ls'\n```\nStep 3:\n"
     "```python\nos.system(name)\n```\n", "import os\n\nname = 'ls'\n\nos.system(name)\n", 5),
    # compared (and moved) but not joined: the block used alone has its own line numbers again
    ("```python\nprint(1)\n```\n```python\nimport os\n\nos.system('ls')\nprint(2)\n```\n",
     "import os\n\nos.system('ls')\nprint(2)\n", 3),
    # an artifact wrapper and a script beside its tests
    ('<antArtifact identifier="a" type="application/vnd.ant.code" language="python">\n'
     "import os\nos.system('ls')\n</antArtifact>\n", "import os\nos.system('ls')\n", 2),
    ("```python\nimport os\nos.system('ls')\n```\n`test_ls.py`:\n```python\nimport pytest\n\n"
     "def test_ls():\n    assert True\n```\n", "import os\nos.system('ls')\n", 2),
], ids=["joined-steps", "compared-not-joined", "artifact", "beside-tests"])
def test_checklist_lines_are_cell_lines_for_every_reply_shape(reply: str, code: str,
                                                              line: int) -> None:
    from llmscript_magic._pipeline.extract import extract_code

    found = extract_code(reply)
    assert found.code == code
    report = validate(found.code, tree=found.tree, available=IMAGE)
    assert [(c.name, c.line) for c in report.warnings] == [("risk:shell", line)]
    assert report.to_dict() == validate(found.code, available=IMAGE).to_dict()
