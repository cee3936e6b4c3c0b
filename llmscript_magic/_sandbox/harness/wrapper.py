"""Runs the user's script as __main__, then reports figures and the exception.

Executed as a standalone file by the sandbox's own Python (stdlib only):
``python3 -B -I wrapper.py SCRIPT STATUS_FD``. Figures and the exception
name go to STATUS_FD as frames (1 type byte, 4-byte length, payload) so they
never mix with the user's stdout. matplotlib is touched only if the script
imported it.
"""

import os
import struct
import sys


def _send(fd: int, kind: bytes, payload: bytes) -> None:
    data = kind + struct.pack(">I", len(payload)) + payload
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass


def _figures(fd: int) -> None:
    if "matplotlib.pyplot" not in sys.modules:
        return
    import io

    plt = sys.modules["matplotlib.pyplot"]
    for num in plt.get_fignums():
        buf = io.BytesIO()
        try:
            plt.figure(num).savefig(buf, format="png", dpi=100)
        except Exception as exc:  # a broken figure must not hide the others
            print(f"[sandbox] figure {num} could not be saved: {exc}", file=sys.stderr)
            continue
        _send(fd, b"f", buf.getvalue())


def main() -> None:
    script, fd = sys.argv[1], int(sys.argv[2])
    os.set_inheritable(fd, False)
    sys.argv = [script]
    sys.path.insert(0, os.getcwd())
    import warnings

    warnings.filterwarnings("ignore", message=".*non-interactive.*")
    import runpy

    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:
        import traceback

        _send(fd, b"x", type(exc).__name__.encode())
        # Hide the wrapper's and runpy's frames: the user sees only their own code.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    _figures(fd)
    os._exit(code)


if __name__ == "__main__":
    main()
