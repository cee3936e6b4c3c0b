"""Names shared by the kernel side and the JupyterLab extension.

The extension declares the same names in ``labextension/src/protocol.ts``;
``tests/test_protocol.py`` keeps the two sides equal, so change both together. The
version has one Python source, ``llmscript_magic.__version__``, which the same test
holds equal to ``labextension/package.json`` (the extension reports it in its comm
"hello" reply). Notebooks keep these keys: renaming one breaks the notebooks saved
before, so add a new key instead.
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
