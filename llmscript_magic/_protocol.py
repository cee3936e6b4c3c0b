"""Names shared by the kernel side and the JupyterLab extension.

The extension declares the same names in ``labextension/src/protocol.ts`` (and its
version in ``labextension/package.json``); ``tests/test_protocol.py`` keeps the two
sides equal, so change both together. A notebook saved today must still be read by
both sides tomorrow: renaming a key here breaks old notebooks, add a new one instead.
"""

#: Comm target the extension registers on every notebook kernel; widget buttons
#: insert cells through it (payloads from comm callbacks are ignored by front ends).
COMM_TARGET = "llmscript"
#: Key of our extra dict in the ``set_next_input`` payload and in the comm's insert data.
PAYLOAD_KEY = "llmscript"
#: Cell metadata key of a generated cell: its generation info (model, hashes, checks).
INFO_KEY = "llmscript"
#: Cell metadata key of the ``%%generate`` cell: the full generation record (set by the
#: extension), read back for replay.
RECORD_KEY = "llmscript_record"
#: Cell metadata key of a ``%%generate`` cell made by "Generate code from this cell".
FROM_KEY = "llmscript_from"
#: Tag carried by every generated cell.
GENERATED_TAG = "llmscript-generated"
#: Output metadata key of the ``%%generate`` cell's output: {"record": ..., "summary": ...};
#: the record lives here too so replay works without the extension. Python side only.
OUTPUT_KEY = "llmscript"
#: The package version, equal to the extension's (``package.json``), which it reports in
#: its comm "hello" reply.
VERSION = "0.1.0"
