"""The run protocol's names, in one place for both sides of the sandbox wall.

The host (``docker.py``, ``local.py``, ``outcome.py``) imports this module from
the package; the harness programs (``runner.py``, ``wrapper.py``) load it from
their own folder, since the sandbox runs them with ``python3 -I`` (their folder
is not on ``sys.path``): the local backend binds the harness folder read-only
at ``LOCAL_HARNESS``, and a container writes this file beside the runner in
``HARNESS_TMP`` when it starts (``docker.BOOT``), so no image carries it and
no image needs a rebuild when it changes. Standard library only, and nothing
but constants: it runs on the image's Python (3.11) and the host's (3.10+).
"""

import struct

# Frames ---------------------------------------------------------------------
#: Every message between the script's process, the runner and the host is a
#: frame: one kind byte, a 4-byte big-endian length (``HEADER``), the payload.
#: One byte keeps a frame cheap to split in a stream that may hold megabytes;
#: the kinds are named here so that a new kind cannot reuse a byte by accident.
HEADER = struct.Struct(">I")
HEAD_BYTES = 1 + HEADER.size  # kind byte + length

#: From the runner to the host (the container's stdout; the local backend's
#: relay hands the output kinds to its ``emit``), in this order per run:
#: output chunks while the script runs, then figures, values, files, report.
OUT = b"o"  # a chunk of the script's stdout
ERR = b"e"  # a chunk of the script's stderr
FIGURE = b"f"  # a PNG figure (also from the script's process to the runner)
VALUE = b"v"  # an ``--output`` value: a JSON header line, then its data (also from the script)
FILES = b"t"  # a piece of the tar of the changed work-dir files (at most ``TAR_CHUNK``)
REPORT = b"r"  # the run's report (JSON), always the last frame of a run

#: From the script's process (``wrapper.py``, which the script could forge:
#: checked, never trusted) or the check's evaluator to the runner, on the status
#: pipe. ``STATUS`` is no frame: it tags that pipe among the relay's streams.
EXCEPTION = b"x"  # the name of the exception the script ended with
CHECK_VALUE = b"k"  # a value the check uses (as ``VALUE``, or a module / why it is opaque)
MISSING = b"m"  # the ``--output`` names that cannot come back (JSON ``{name: why}``)
VERDICT = b"c"  # the check's verdict (JSON ``[ok, why]``): only the evaluator's counts
WAITING = b"w"  # the forked evaluator is there and waits for its check job
STATUS = b"s"  # the relay's tag for the status pipe

#: The reason in a ``MISSING`` frame for a name the script never defined
#: (the host tells that case apart from a value that could not cross).
UNDEFINED = "it is not defined when the script ends"

# Caps -----------------------------------------------------------------------
#: Byte limits that both sides hold, so that the script's side, the runner and
#: the host agree on what fits: each side caps again and never trusts the one
#: before it (the script's process may send anything).
VALUE_BYTES = 64 * 2**20  # all ``--output`` values together, as the wrapper encodes them
VALUE_CAP = 65 * 2**20  # VALUE_BYTES plus their headers: the runner and host drop more
FIGURE_BYTES = 64 * 2**20  # all figures of a run together
STATUS_CAP = 136 * 2**20  # what the runner reads from the status pipe: figures + values + verdicts
MAX_FIGURES = 64  # figures a result keeps
PNG = b"\x89PNG\r\n\x1a\n"  # what a figure starts with; anything else is dropped
TAR_CHUNK = 2**20  # the largest ``FILES`` frame, and the unit the job's bytes are read in
VERDICT_OUTPUT = 2**16  # output the check's evaluator may write (it is thrown away)
VERDICT_BYTES = 2**20  # the longest status stream a verdict may take

# Uids -----------------------------------------------------------------------
#: Who runs what. The container's runner is root with SETUID, SETGID and KILL
#: only; each run of a container has a uid of its own from ``RUN_UID_LOW`` up
#: (its check's evaluator the next one), so killing that uid's processes and
#: removing its files ends the run and nothing of it reaches the next one. The
#: range lies inside a rootless engine's 65536 mapped ids. ``SCRIPT_UID``
#: (nobody) is the image's user and the script's when a job names no uid.
RUNNER_UID = 0
SCRIPT_UID = 65534
CHECK_UID = 65533  # the check's evaluator beside a SCRIPT_UID run
RUN_UID_LOW, RUN_UID_HIGH = 20000, 60000

# Paths inside the sandbox -----------------------------------------------------
#: The root file system is read-only; a run writes only in ``SCRATCH``, and the
#: runner removes what a run left there. The harness's own files live where a
#: run may read but not change them.
WORK = "/work"  # the script's working directory: its input and output files
TMP = "/tmp"  # the script's HOME and TMPDIR
SCRATCH = (WORK, TMP, "/dev/shm")  # where a run can write
HARNESS_TMP = "/tmp/.llmscript"  # a container's harness files and jobs (root's, 0755)
LOCAL_HARNESS = "/opt/llmscript/harness"  # the local backend's read-only harness folder
MPL_IMAGE = "/opt/llmscript/mpl"  # the image's prebuilt matplotlib font list (its build makes it)
MPL_SHARED = "/tmp/.config/matplotlib"  # the image's matplotlib font list, copied for runs
MPL_HOME = "/tmp/.mpl-{uid}"  # a run's own matplotlib config folder (MPLCONFIGDIR)
