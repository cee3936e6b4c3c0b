"""The ``llmscript`` command: run notebooks headless, check the setup, manage the image.

    llmscript run NOTEBOOK... [-o OUT] [--replay] [-j N] [--trust]
    llmscript doctor
    llmscript sandbox build|list|prune|push [--engine URL] [--from URL]
    llmscript export NOTEBOOK [-d DIR]
    llmscript course usage [--url URL | --file PATH] [--json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import LLMScriptError
from .._ui.inert import printable


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmscript", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="execute notebooks, generating or replaying %%generate cells")
    run.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    run.add_argument("-o", "--output", help="where to write the executed notebook (one input) "
                     "or folder (several); default: NAME.out.ipynb beside the input")
    run.add_argument("--replay", action="store_true",
                     help="answer from the generations recorded in the notebook "
                     "(no key, no network)")
    run.add_argument("-j", "--jobs", type=int, default=1, help="notebooks run in parallel")
    run.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    run.add_argument("--kernel", default="python3", help="kernel name")
    run.add_argument("--trust", action="store_true",
                     help="let the notebook's flags pick a weaker sandbox (--sandbox local, "
                     "--isolation container) and read files outside its folder")

    sub.add_parser("doctor", help="check engine, image, keys and extension; say how to fix each")

    sb = sub.add_parser("sandbox", help="manage the sandbox image")
    sb.add_argument("action", choices=["build", "list", "prune", "push"],
                    help="push: copy the image to another engine (save | load, no registry)")
    sb.add_argument("--engine", default=None, metavar="URL",
                    help="push: the engine that receives the image (default: DOCKER_HOST's, "
                    "with its TLS settings), e.g. ssh://user@host or "
                    "unix:///run/user/1000/podman/podman.sock")
    sb.add_argument("--from", dest="source", default=None, metavar="URL",
                    help="push: the engine that has it (default: the local socket)")
    sb.add_argument("--image", default=None, help="image name (default: the built-in one)")
    sb.add_argument("--force", action="store_true", help="rebuild even if it exists")
    sb.add_argument("--dockerfile", action="store_true",
                    help="build from the shipped Dockerfile (needs an image registry)")
    _env_flags(sb)

    ex = sub.add_parser("export", help="write each generated cell's code to a .py script")
    ex.add_argument("notebook")
    ex.add_argument("-d", "--dir", default=None,
                    help="output folder (default: beside the notebook)")
    course = sub.add_parser("course", help="a course on JupyterHub: the per-student usage "
                            "report (docs/course.md)")
    course.add_argument("action", choices=["usage"])
    course.add_argument("--url", default=None, help="the course service (default: "
                        "$LLMSCRIPT_COURSE_URL), asked with your hub token")
    course.add_argument("--file", default=None, help="read this usage record instead (on the "
                        "server)")
    course.add_argument("--json", action="store_true", help="JSON instead of a table")
    return p


def _env_flags(sb: argparse.ArgumentParser) -> None:
    """build: an image with the kernel's (or the listed) packages, layered over --image."""
    sb.add_argument("--like-kernel", action="store_true",
                    help="build: the same versions as this environment's importable packages "
                    "(Jupyter and llmscript left out)")
    sb.add_argument("--packages", nargs="+", default=[], metavar="NAME[==VER]",
                    help="build: add these packages (Linux wheels through this host's pip)")
    sb.add_argument("--requirements", default=None, metavar="FILE",
                    help="build: add the packages of a requirements file")
    sb.add_argument("--python", default=None, metavar="PATH",
                    help="build --like-kernel: the environment of this interpreter "
                    "(default: the one running llmscript)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            from .headless import run_notebooks

            return run_notebooks(args.notebooks, output=args.output, replay=args.replay,
                                 jobs=args.jobs, timeout=args.timeout, kernel=args.kernel,
                                 trust=args.trust)
        if args.command == "doctor":
            from .doctor import doctor

            return doctor()
        if args.command == "sandbox":
            return _sandbox(args)
        if args.command == "course":
            from .._course.report import usage_report

            print(usage_report(args.url, args.file, args.json))
            return 0
        if args.command == "export":
            from .headless import export_notebook

            for path in export_notebook(args.notebook, args.dir):
                print(printable(str(path)))
            return 0
    except LLMScriptError as err:
        print(printable(f"llmscript: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmscript: interrupted", file=sys.stderr)
        return 130
    return 2


def _sandbox(args: argparse.Namespace) -> int:
    from .._sandbox import DEFAULT_IMAGE
    from .._sandbox.image import build_image, list_images, prune

    if args.action == "build" and (args.like_kernel or args.packages or args.requirements
                                   or args.python):
        from .._sandbox.layers import build_for_env

        built = build_for_env(like_kernel=args.like_kernel, packages=args.packages,
                              requirements=args.requirements, python=args.python,
                              base=args.image or DEFAULT_IMAGE,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
        print(f"sandbox image ready: {built.ref} (runs from this environment use it)")
    elif args.action == "build":
        name = build_image(args.image or DEFAULT_IMAGE, offline=not args.dockerfile,
                           force=args.force)
        print(f"sandbox image ready: {name}")
    elif args.action == "push":
        from .._sandbox.engine import push_image

        push_image(args.image or DEFAULT_IMAGE, args.engine, args.source,
                   log=lambda line: print(line, file=sys.stderr, flush=True))
        print(f"sandbox image ready on {args.engine or 'the DOCKER_HOST engine'}")
    elif args.action == "list":
        for image in list_images():
            print("  ".join(f"{k}={v}" for k, v in image.items()))
    else:
        print(f"removed {prune()} leftover sandbox containers/volumes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
