"""Serve one stand-in out of process: ``python tests/standins anthropic --port 0 ...``.

Prints the port on its first stdout line, then serves until SIGTERM/SIGINT (see the
package docstring for the script format).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

# Run as ``python tests/standins``, Python puts this folder first on sys.path, where
# ``anthropic.py`` and ``openai.py`` would shadow the real SDKs: put tests/ there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from standins import STANDINS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an LLM API stand-in on 127.0.0.1.")
    parser.add_argument("api", choices=sorted(STANDINS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--script", help="JSON file: a list of replies or "
                                         '{"replies": [...], "default": {...}}')
    parser.add_argument("--default-text", help="reply text once the script runs out")
    parser.add_argument("--api-key", help="answer 401 to any other key")
    parser.add_argument("--log", help="append every request (key redacted) to this JSONL file")
    args = parser.parse_args(argv)

    standin = STANDINS[args.api](port=args.port, api_key=args.api_key, log_path=args.log)
    if args.default_text is not None:
        standin.set_default(args.default_text)
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            standin.load_script(json.load(f))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    standin.start()
    print(standin.port, flush=True)
    print(f"{args.api} stand-in at {standin.url}", file=sys.stderr, flush=True)
    try:
        done.wait()
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
