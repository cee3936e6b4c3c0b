"""The names the kernel and the JupyterLab extension share are the same on both sides.

They are declared twice: in ``llmscript_magic/_protocol.py`` and in
``labextension/src/protocol.ts``; the version is ``llmscript_magic.__version__`` on one
side, ``labextension/package.json`` and ``src/version.ts`` on the other. If they drift,
the extension silently stops recognising the kernel's payloads, or old notebooks lose
their records; this test fails first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import llmscript_magic
from llmscript_magic import _protocol

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "labextension"

# `export const NAME = 'value';` (single or double quotes, as prettier leaves them)
_TS_CONST = re.compile(r"""^export const ([A-Z_]+)\s*=\s*(['"])(.*?)\2;""", re.MULTILINE)


def ts_constants(path: Path) -> dict[str, str]:
    return {name: value for name, _, value in _TS_CONST.findall(path.read_text("utf-8"))}


def test_every_typescript_protocol_name_has_the_same_value_in_python() -> None:
    ts = ts_constants(EXT / "src" / "protocol.ts")
    assert {"COMM_TARGET", "RECORD_KEY", "GENERATED_TAG"} <= set(ts), ts  # the parser works
    python = {name: getattr(_protocol, name, None) for name in ts}
    assert python == ts


def test_the_python_side_uses_the_shared_names() -> None:
    from llmscript_magic._notebook import insert
    from llmscript_magic._store import cache

    assert insert.COMM_TARGET == _protocol.COMM_TARGET
    assert (cache.RECORD_KEY, cache.OUTPUT_KEY) == (_protocol.RECORD_KEY, _protocol.OUTPUT_KEY)


def test_the_extension_and_the_package_have_one_version() -> None:
    package_json = json.loads((EXT / "package.json").read_text("utf-8"))
    version_ts = ts_constants(EXT / "src" / "version.ts")
    versions = {
        "labextension/package.json": package_json["version"],
        "labextension/src/version.ts": version_ts.get("VERSION"),
        "llmscript_magic.__version__": llmscript_magic.__version__,
    }
    assert len(set(versions.values())) == 1, versions


def test_the_shortcut_is_declared_in_the_settings_schema_for_the_command() -> None:
    """Users can rebind it in Settings; the command id must match the one index.ts adds."""
    package_json = json.loads((EXT / "package.json").read_text("utf-8"))
    schema_dir = EXT / package_json["jupyterlab"]["schemaDir"]
    schema = json.loads((schema_dir / "plugin.json").read_text("utf-8"))
    index_ts = (EXT / "src" / "index.ts").read_text("utf-8")
    command = re.search(r"GENERATE_COMMAND = '([^']+)'", index_ts)
    assert command is not None
    shortcuts = schema["jupyter.lab.shortcuts"]
    assert [(s["command"], s["keys"]) for s in shortcuts] == [(command.group(1),
                                                              ["Accel Shift G"])]
    assert "addKeyBinding" not in index_ts  # one declaration, not two
