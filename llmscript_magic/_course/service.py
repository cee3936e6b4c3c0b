"""The course's hub service: ``python -m llmscript_magic._course.service``.

JupyterHub starts it as a managed service (see docs/course.md) and proxies it at
``/services/llmscript-course/``. It holds the provider key (read from a file only
its user can read, or from its own environment, which the hub gives nobody else) and
answers two calls, each authenticated with the caller's hub token (``HubAuth``: the
token every student's server gets as ``$JUPYTERHUB_API_TOKEN``):

- ``POST v1/generate``: a ``Request`` as JSON from the ``course`` provider; the gate
  (``gate.py``) checks the model, the rate and the student's budgets, then the request
  goes to the real provider with the course's key and the reply streams back as
  newline-delimited JSON. Refusals are one line, with HTTP 402 (budget), 403 (model),
  429 (rate).
- ``POST v1/run``: a sandbox job (``_sandbox/wire.py``) from a kernel's ``--sandbox
  course``; ``sandbox_run.py`` runs it in the class's shared engine (the service holds
  the Docker socket, students never do), labelled with the student's name, and records
  it in the student's usage (runs, seconds). 429 when one is already running or the
  student is over ``[service] runs`` a minute.
- ``GET v1/usage``: the per-student record, for the course's teachers only.
- ``GET v1/me``: the caller's own spending and budgets (``%llmscript usage`` shows them).
- ``GET /services/llmscript-course/``: the same report as a page, for teachers signed in
  to the hub (OAuth through the hub).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .._errors import BudgetError, ConfigurationError, LLMScriptError, RateLimitError
from ..providers.base import Message, Reply, Request
from .budget import usd
from .gate import Gate, ServiceSettings
from .settings import CourseSettings, course_path, load_toml

NAME = "llmscript-course"
_STATUS = {BudgetError: 402, RateLimitError: 429, ConfigurationError: 403}


def _status(err: LLMScriptError) -> int:
    return next((code for cls, code in _STATUS.items() if isinstance(err, cls)), 502)


def make_app(gate: Gate, keys: dict[str, str], prefix: str = "/") -> Any:
    """The tornado application (tornado and jupyterhub are imported here, on use)."""
    from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
    from tornado import web

    auth = HubOAuth(cache_max_age=60)  # one instance: tokens for the API, cookies for the page

    class Base(HubOAuthenticated, web.RequestHandler):
        hub_auth = auth

        def get_login_url(self) -> str:
            raise web.HTTPError(403)  # an API: no redirect to a login page

        def fail(self, status: int, message: str) -> None:
            self.set_status(status)
            self.finish({"error": message})

        def user(self) -> str:
            return str(self.current_user["name"])

    class Generate(Base):
        @web.authenticated
        async def post(self) -> None:
            user = self.user()
            try:
                body = json.loads(self.request.body)
                model = gate.model(str(body.get("model", "")))
                request = Request(
                    model.partition(":")[2], gate.system(str(body.get("system", ""))),
                    tuple(Message(**m) for m in body.get("messages", ())),
                    int(body.get("max_tokens", 4096)), body.get("temperature"),
                    body.get("thinking_tokens"))
                gate.admit(user, model, request)
            except LLMScriptError as err:
                return self.fail(_status(err), str(err))
            except (ValueError, TypeError, KeyError) as err:
                return self.fail(400, f"Malformed request ({type(err).__name__}): update "
                                 "llmscript-magic in the server's environment.")
            await self._forward(user, model, request)

        async def _forward(self, user: str, model: str, request: Request) -> None:
            from ..providers.registry import provider_instance, resolve_model, stream_reply

            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
            put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731

            def work() -> None:
                reply = Reply()
                try:
                    cls, _ = resolve_model(model)
                    provider = provider_instance(cls, keys.get(cls.name))
                    for chunk in stream_reply(provider, request, reply):
                        if chunk:
                            put({"text": chunk})
                    gate.record(user, model, reply.usage)
                    put({"done": True, "usage": asdict(reply.usage), "model": reply.model,
                         "stop_reason": reply.stop_reason, "thinking": reply.thinking})
                except LLMScriptError as err:
                    gate.record(user, model, reply.usage)
                    put({"error": str(err)})
                finally:
                    put(None)

            threading.Thread(target=work, name=f"course-{user}", daemon=True).start()
            self.set_header("Content-Type", "application/x-ndjson")
            while (item := await queue.get()) is not None:
                self.write(json.dumps(item) + "\n")
                await self.flush()
            self.finish()

    class Run(Base):
        @web.authenticated
        async def post(self) -> None:
            from .sandbox_run import run_job

            user = self.user()
            try:
                gate.start_run(user)
            except LLMScriptError as err:
                return self.fail(_status(err), str(err))
            try:
                status, answer = await asyncio.get_running_loop().run_in_executor(
                    None, run_job, gate, user, self.request.body)
            finally:
                gate.running.discard(user)  # end_run (in run_job) already did, normally
            self.set_status(status)
            self.finish(answer)

    class Usage(Base):
        @web.authenticated
        def get(self) -> None:
            if self.user() not in gate.settings.teachers:
                return self.fail(403, "Only the course's teachers ([service] teachers) may "
                                 "read the usage report.")
            self.finish({"students": gate.report()})

    class Page(HubOAuthenticated, web.RequestHandler):
        """The teacher's page under the hub (browser login through the hub's OAuth)."""

        hub_auth = auth

        @web.authenticated
        def get(self) -> None:
            import html

            user = str(self.current_user["name"])
            if user not in gate.settings.teachers:
                self.set_status(403)
                self.finish("<p>Only the course's teachers may read this page.</p>")
                return
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                    name, r["requests"], r["refused"], r["input_tokens"], r["output_tokens"],
                    usd(r["cost_today"]), usd(r["cost_total"]), r["last"], r["runs"],
                    f"{r['run_seconds']:.1f}")) + "</tr>"
                for name, r in gate.report().items())
            head = "".join(f"<th>{h}</th>" for h in ("student", "requests", "refused", "in",
                                                      "out", "today", "total", "last", "runs",
                                                      "run seconds"))
            self.set_header("Content-Security-Policy", "default-src 'none'")
            self.finish(f"<!doctype html><title>Course usage</title><h1>Course usage</h1>"
                        f"<table><tr>{head}</tr>{rows}</table>")

    class Me(Base):
        @web.authenticated
        def get(self) -> None:
            self.finish(gate.status(self.user()))

    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    return web.Application(
        [(prefix, Page), (prefix + "oauth_callback", HubOAuthCallbackHandler),
         (prefix + "v1/generate", Generate), (prefix + "v1/run", Run),
         (prefix + "v1/usage", Usage), (prefix + "v1/me", Me)],
        cookie_secret=os.urandom(32))


def read_keys(settings: ServiceSettings) -> dict[str, str]:
    """The provider keys from their files; a missing file is one line at start-up."""
    keys = {}
    for provider, path in settings.keys.items():
        try:
            keys[provider] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigurationError(f"Cannot read the {provider} key file {path} "
                                     f"({err.strerror}): check [service] keys.") from None
    return keys


def main() -> int:
    try:
        path = course_path()
        if path is None:
            raise ConfigurationError("No course file: set LLMSCRIPT_COURSE in the service's "
                                     "environment or write /etc/llmscript/course.toml.")
        table = load_toml(path)
        gate = Gate(ServiceSettings.from_table(table), CourseSettings.from_table(table, str(path)))
        keys = read_keys(gate.settings)
    except LLMScriptError as err:
        print(f"{NAME}: {err}", file=sys.stderr)
        return 2
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8765"))
    app = make_app(gate, keys, os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"))

    async def serve() -> None:
        # the address to bind may differ from the one others use (Kubernetes: http://hub:8765)
        app.listen(url.port or 80, os.environ.get("LLMSCRIPT_SERVICE_IP")
                   or url.hostname or "127.0.0.1")
        print(f"{NAME}: listening on {url.geturl()}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
