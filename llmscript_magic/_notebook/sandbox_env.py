"""``%llmscript sandbox build|require``: the sandbox image for the running kernel.

From a notebook, "the kernel's environment" is this process: ``build --like-kernel``
pins what it can import, ``require NAME...`` adds packages (at the kernel's versions
when it has them). The line stays in the notebook, so whoever runs it (a student, or
``llmscript run``) gets an image with the same packages, built once and found again
by its package list. Later runs in this kernel use that image.
"""

from __future__ import annotations

import argparse
import sys

from IPython.core.error import UsageError

from .._errors import LLMScriptError

USAGE = ("Usage: %llmscript sandbox build [--like-kernel] [--packages NAME[==VER] ...] "
         "[--requirements FILE] | %llmscript sandbox require NAME[==VER] ...")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%llmscript sandbox build", add_help=False,
                                exit_on_error=False)
    p.add_argument("--like-kernel", action="store_true")
    p.add_argument("--packages", nargs="+", default=[])
    p.add_argument("--requirements", default=None)
    p.add_argument("--image", default=None)
    return p


def sandbox_command(words: list[str]) -> None:
    """Build (or find) the image and make it this kernel's; one line on what happened."""
    from .._sandbox import DEFAULT_IMAGE
    from .._sandbox.layers import build_for_env

    if words[:1] == ["require"] and len(words) > 1:
        like, packages, requirements, base = False, words[1:], None, DEFAULT_IMAGE
    elif words[:1] == ["build"]:
        try:
            args, extra = _parser().parse_known_args(words[1:])
        except argparse.ArgumentError as err:
            raise UsageError(f"{err}: {USAGE}") from None
        if extra:
            raise UsageError(f"Unknown argument {extra[0]!r}: {USAGE}")
        like, packages, requirements = args.like_kernel or not (
            args.packages or args.requirements), args.packages, args.requirements
        base = args.image or DEFAULT_IMAGE
    else:
        raise UsageError(USAGE)
    try:
        built = build_for_env(like_kernel=like, packages=packages, requirements=requirements,
                              python=sys.executable, base=base,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
    except LLMScriptError as err:
        raise UsageError(str(err)) from None
    print(f"sandbox image {built.ref}: {len(built.packages)} package(s); runs from this "
          "kernel use it")
