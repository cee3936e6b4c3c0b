"""The pipeline: spec -> prompt -> reply -> code -> checks -> (run), with repair.

``generate()`` is the public entry point; the magic is a thin shell over it.
Each attempt goes through every layer; when one fails and retries remain, the
model gets a short, trimmed report and tries again. Every attempt is kept.
"""

from __future__ import annotations

import ast
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._course.budget import Guard
from .._errors import (
    CancelledError,
    ConfigurationError,
    ExtractionError,
    ReplayError,
    SandboxError,
)
from .._store.cache import DiskCache, entry_to_reply, reply_to_entry, request_key
from .._store.recordings import Recordings, current_scope, lookup
from ..providers.base import Message, Provider, Reply, Request, Usage, resolve_model
from .checks import UNEVALUATED, example_check, expr_check, outputs_check, run_check, tail
from .options import Options
from .parity import environment_text, parity_check
from .prompt import Prompt, build_prompt, repair_message
from .spec import Spec, parse_spec
from .tutor import (
    gave_solution,
    hide_solution,
    tutor_check,
    tutor_system,
    withhold_solution,
)
from .validate import Check, ValidationReport, validate

if TYPE_CHECKING:
    from .._sandbox import RunResult, SandboxSpec
    from .._sandbox.facts import ImageFacts

ChunkCallback = Callable[[str], None]


@dataclass
class Attempt:
    reply: str
    code: str | None
    report: ValidationReport
    usage: Usage
    stop_reason: str | None
    run: RunResult | None = None
    outputs: dict[str, Any] | None = None  # variables loaded back from the run
    error: str | None = None  # why no code, or why the sandbox could not run it
    source: str = "model"  # "model", "cache" or "replay"
    will_retry: bool = False  # set by the loop: the model gets this attempt's report back

    @property
    def repairable(self) -> bool:
        """Worth another try: code exists, a layer failed, and the failure was the code's."""
        return (self.code is not None and self.error is None
                and any(c.name != UNEVALUATED for c in self.report.failures))


@dataclass
class Generation:
    """What one ``%%generate`` produced; ``record()`` is what the notebook keeps."""

    spec: Spec
    prompt: Prompt
    model: str  # "provider:model"
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    timing: dict[str, float] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    sent: tuple[str, ...] = ()  # what notebook data went into the prompt
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]

    @property
    def reply(self) -> str:
        return self.last.reply if self.attempts else ""

    @property
    def code(self) -> str | None:
        return self.last.code if self.attempts else None

    @property
    def report(self) -> ValidationReport:
        return self.last.report if self.attempts else ValidationReport([])

    @property
    def run(self) -> RunResult | None:
        return self.last.run if self.attempts else None

    @property
    def error(self) -> str | None:
        return self.last.error if self.attempts else None

    @property
    def ok(self) -> bool:
        return bool(self.attempts) and self.code is not None and self.report.ok

    @property
    def source(self) -> str:
        return self.last.source if self.attempts else "model"

    def code_hash(self) -> str:
        return hashlib.sha256((self.code or "").encode()).hexdigest()

    def record(self) -> dict[str, Any]:
        """JSON-safe and secret-free: enough to replay this generation offline."""
        return {
            "version": 1,
            "id": self.id,
            "spec_hash": self.spec.hash(),
            "model": self.model,
            "created": self.created,
            "code": self.code,
            "code_hash": self.code_hash(),
            "ok": self.ok,  # a live kernel replays only a generation that succeeded
            "usage": asdict(self.usage),
            "attempts": len(self.attempts),
            "replies": self.entries,
        }


def _stream(provider: Provider, request: Request, reply: Reply,
            on_chunk: ChunkCallback | None, cancel: threading.Event | None,
            on_thinking: ChunkCallback | None = None) -> None:
    """Relay text chunks, and the growth of ``reply.thinking`` (an empty chunk says so)."""
    from ..providers.registry import stream_reply

    chunks: list[str] = []
    shown = 0
    gen = stream_reply(provider, request, reply)  # a plugin's stray exception: one line
    try:
        for chunk in gen:
            chunks.append(chunk)
            if on_thinking and len(reply.thinking) > shown:
                on_thinking(reply.thinking[shown:])
                shown = len(reply.thinking)
            if on_chunk and chunk:
                on_chunk(chunk)
            if cancel is not None and cancel.is_set():
                raise CancelledError("Generation stopped; nothing was inserted.")
    finally:
        gen.close()  # closes the HTTP stream on cancel or interrupt
    reply.text = reply.text or "".join(chunks)


class _Completer:
    """Answers a request from replay recordings, the cache, or the provider.

    ``--replay NB`` (or ``LLMSCRIPT_REPLAY``) answers only from NB's recording of the
    running cell and says why when there is none. Without it, a recording of the running
    cell with an unchanged spec in the notebook the kernel runs (see
    ``_store/recordings.kernel_notebooks``) answers before the cache, so papermill and
    nbconvert reuse recorded generations with no key. ``--refresh`` always asks the model;
    ``--no-cache`` does too where the front end names the cell (JupyterLab: a user is
    there to want a new answer), but not in runs without cell ids (papermill, nbconvert).

    Headless replays (``--replay``, or no cell ids) are exact: the recording answers
    as it was. In a live kernel (cell ids, no ``--replay``) a recording answers only
    when it succeeded and each request is the one recorded (same spec, notebook data
    and options); otherwise the model is asked again, so a failure is never replayed.
    The cache likewise serves and keeps only replies that ``usable`` accepts (generate:
    replies with code), so a reply that gave no code is asked again.
    """

    def __init__(self, opts: Options, spec: Spec) -> None:
        self.opts = opts
        self.cls, self.model = resolve_model(opts.model)
        self.provider_name = self.cls.name
        self.label = f"{self.provider_name}:{self.model}"
        self.recorded: list[dict[str, Any]] | None = None
        self.strict = bool(opts.replay)  # a missing recording is an error, not a request
        self.scope = scope = current_scope()
        self.exact = self.strict or scope.cell_id is None  # headless: replay as recorded
        record: dict[str, Any] | None = None
        if opts.replay:
            try:
                found = Recordings.from_notebook(opts.replay).find(spec.hash(), scope.cell_id)
            except (OSError, ValueError) as err:
                raise ReplayError(f"Cannot read the replay notebook {opts.replay} ({err}): pass "
                                  "--replay PATH to a saved .ipynb.") from None
            if found.record is None:
                raise ReplayError(f"No recorded generation in {Path(opts.replay).name}: "
                                  f"{found.problem}; run without --replay, with an API key.")
            record = found.record
        elif (not opts.refresh and (opts.cache or scope.cell_id is None)
              and (hit := lookup(spec.hash(), scope))):
            record = hit[0] if self.exact or succeeded(hit[0]) else None
        if record is not None:
            self.recorded = list(record.get("replies", []))
            self.label = record.get("model") or self.label
        self.cache = DiskCache(opts.cache_dir) if opts.cache else None
        #: which cached replies may answer and be kept: generate() wants replies with code
        self.usable: Callable[[Reply], bool] = lambda reply: True
        self._provider: Provider | None = None

    def provider(self) -> Provider:
        if self._provider is None:
            from .._errors import MissingKeyError
            from ..providers.registry import provider_instance

            # a registered instance (a test's fake) answers; SDK clients are shared per settings
            provider = provider_instance(self.cls, self.opts.api_key,
                                         timeout=self.opts.request_timeout,
                                         max_retries=self.opts.max_retries,
                                         base_url=self.opts.base_url)
            try:
                provider.api_key()  # fail early, with the how-to-fix line, before streaming
            except MissingKeyError as err:
                if not (where := self._where()):
                    raise
                raise MissingKeyError(f"{str(err).rstrip('.')} ({where}).") from None
            self._provider = provider
        return self._provider

    def _where(self) -> str:
        """Where replay looked, for the no-key line (headless runners show only that).

        Said only where replay could have answered: a headless run, or a kernel that
        found its notebook; an interactive cell gets the plain no-key line.
        """
        scope = self.scope
        if searched := scope.notebooks or scope.candidates:
            names = ", ".join(Path(n).name for n in searched[:3])
            return f"no recording of this cell with this spec in {names}"
        if len(scope.found_here) > 1:
            names = ", ".join(Path(n).name for n in scope.found_here[:4])
            return (f"found {names} here, none holding the cells run: set "
                    "LLMSCRIPT_REPLAY=NOTEBOOK to replay one")
        if scope.headless:
            return ("papermill or nbconvert: set LLMSCRIPT_REPLAY=NOTEBOOK to replay its "
                    "recorded generations")
        return ""

    #: shown the model's reasoning (extended thinking) as it streams; set by generate()
    on_thinking: ChunkCallback | None = None
    #: the budgets every model request is checked against; set by generate()
    guard: Guard | None = None

    def _show(self, reply: Reply, on_chunk: ChunkCallback | None) -> None:
        """A stored reply (cache, recording) shown as if it streamed."""
        if self.on_thinking and reply.thinking:
            self.on_thinking(reply.thinking)
        if on_chunk:
            on_chunk(reply.text)

    def complete(self, request: Request, attempt: int, on_chunk: ChunkCallback | None,
                 cancel: threading.Event | None) -> tuple[Reply, str, str]:
        key = request_key(self.provider_name, request)
        if (self.recorded is not None and not self.exact and attempt < len(self.recorded)
                and self.recorded[attempt].get("key") != key):
            self.recorded = None  # live kernel: what is sent changed, so ask again
        if self.recorded is not None and (attempt < len(self.recorded) or self.strict):
            if attempt >= len(self.recorded):
                raise ReplayError(
                    f"The recording has {len(self.recorded)} attempt(s) but replay needed "
                    "another (the checks differ from when it was recorded): run without --replay."
                )
            reply = entry_to_reply(self.recorded[attempt])
            self._show(reply, on_chunk)
            return reply, key, "replay"
        if self.cache is not None and not self.opts.refresh:
            entry = self.cache.get(key)
            if entry is not None and self.usable(reply := entry_to_reply(entry)):
                self._show(reply, on_chunk)
                return reply, key, "cache"
        provider = self.provider()
        if self.guard is not None:  # refused here, before anything is sent (_course/budget)
            self.guard.before(self.label, request, self.opts.retries + 1 - attempt)
        reply = Reply()
        try:
            _stream(provider, request, reply, on_chunk, cancel, self.on_thinking)
        finally:
            if self.guard is not None:
                self.guard.after(self.label, reply.usage)
        if self.cache is not None and not reply.truncated and self.usable(reply):
            self.cache.put(key, reply_to_entry(key, reply))
        return reply, key, "model"


def sandbox_modules(opts: Options) -> frozenset[str] | None:
    """What the sandbox image can import; None when unknown (no Docker, or not docker)."""
    if opts.sandbox != "docker":
        return None
    from .._sandbox import available_modules

    try:
        return available_modules(sandbox_image(opts) or None)
    except SandboxError:
        return None  # reported by the run itself when the user asked to run


def sandbox_image(opts: Options) -> str:
    """The image a docker run uses: ``--image``, else the one built for this environment
    (``llmscript sandbox build --like-kernel``), else '' (the built-in one)."""
    if opts.image or opts.sandbox != "docker":
        return opts.image
    from .._sandbox.layers import env_image

    return env_image()


def sandbox_facts(opts: Options) -> ImageFacts | None:
    """The image's Python and library versions (probed once per image); None when unknown."""
    if opts.sandbox != "docker":
        return None
    from .._sandbox.facts import image_facts

    try:
        return image_facts(sandbox_image(opts) or None)
    except SandboxError:
        return None


def _run(attempt: Attempt, spec: Spec, opts: Options, report: ValidationReport) -> RunResult:
    """The code runs unchanged; the harness binds inputs, returns outputs, checks."""
    from .._sandbox import SHARED, Limits

    assert attempt.code is not None
    sandbox = SHARED.get(sandbox_spec(opts))
    limits = Limits(timeout=opts.timeout, memory_mb=opts.memory_mb, cpus=opts.cpus)
    result = sandbox.run(attempt.code, files=dict(opts.files), limits=limits,
                         inputs=tuple(opts.inputs), outputs=tuple(opts.outputs),
                         check=opts.check, **({"session": True} if opts.session else {}))
    report.add(run_check(result))
    if opts.outputs and result.status == "ok" and result.exit_code == 0:
        report.add(_load_outputs(attempt, opts.outputs, result))
    if opts.check:
        report.add(expr_check(opts.check, result.check))
    if opts.tests:
        from .function_tests import not_run, test_checks

        ran = result.status == "ok" and result.exit_code == 0
        for check in test_checks(sandbox, attempt.code, opts, limits) if ran else not_run(opts):
            report.add(check)
    if result.status == "ok" and (ex := example_check(spec, result)) is not None:
        report.add(ex)
    return result


def session_ready(opts: Options) -> None:
    """``--session`` where it cannot work: one line, before any paid request."""
    if not opts.session:
        return
    if opts.sandbox not in ("docker", "local"):
        raise ConfigurationError(f"--session keeps state in this kernel's docker or local "
                                 f"sandbox, not in --sandbox {opts.sandbox}: drop --session "
                                 "or use --sandbox docker")
    if opts.tests:
        raise ConfigurationError("--test judges the script in a fresh process, without the "
                                 "session's variables: drop --test or --session")


def engine_ready(opts: Options) -> None:
    """Raise ``SandboxUnavailableError`` (one line, with the fix) when ``--run`` cannot run.

    Checked before the model is asked: a run with no engine would only fail after
    the request was paid for.
    """
    if opts.sandbox == "docker":
        from .._sandbox.engine import connect, missing_socket, unreachable

        if (path := missing_socket()) is not None:  # said without a client to clean up
            raise unreachable(FileNotFoundError(f"No such file or directory: {path}"),
                              f"unix://{path}")
        connect(timeout=10)


def sandbox_spec(opts: Options) -> SandboxSpec:
    """Which sandbox ``_run`` (and ``warm_sandbox``) use for these options: the same one."""
    from .._sandbox import SandboxSpec

    if opts.sandbox != "docker":
        return SandboxSpec(opts.sandbox)
    return SandboxSpec(isolation=opts.isolation, image=sandbox_image(opts))


def warm_sandbox(opts: Options) -> None:
    """Do ahead what the first ``--run`` with ``opts`` would pay for while the user waits.

    The engine client and image lookup (the shared sandbox), the image's module list
    and the warm pool for these limits. A kernel's background thread calls it after
    ``%load_ext``; it raises what goes wrong, and the caller ignores that: the real run
    meets the same problem and reports it as usual.
    """
    from .._sandbox import SHARED, Limits

    if opts.sandbox != "docker":
        return
    sandbox = SHARED.get(sandbox_spec(opts))
    sandbox_modules(opts)
    sandbox_facts(opts)  # the image's versions, for the prompt and the parity check
    sandbox.warm(Limits(timeout=opts.timeout, memory_mb=opts.memory_mb, cpus=opts.cpus))


def _load_outputs(attempt: Attempt, names: tuple[str, ...], result: RunResult) -> Check:
    """Whether every ``--output`` came back, as the harness reported it.

    The values stay encoded in ``result.values``: the notebook layer decodes
    them (``decode_outputs``) after ``generate()`` returns.
    """
    return outputs_check(names, result)


_HOST_PATH = re.compile(r"(?:/tmp|/var/tmp|/private/tmp)/[^\s\"']*/(?=[^/\s\"']+)")


def _repair_report(attempt: Attempt) -> str:
    """What the model is told about a failed attempt: bounded, and without host paths."""
    lines = [f"- {c.name}: {c.message}" for c in attempt.report.failures]
    if attempt.run is not None and attempt.run.stderr.strip():
        lines.append("Last lines of stderr:\n" + tail(attempt.run.stderr))
    text = _HOST_PATH.sub("", "\n".join(lines))
    return text.replace(str(Path.home()), "~")[:3000]


def generate(
    spec: str | Spec,
    options: Options | None = None,
    *,
    on_chunk: ChunkCallback | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
    cancel: threading.Event | None = None,
    on_thinking: ChunkCallback | None = None,
    **overrides: Any,
) -> Generation:
    """Generate (and optionally run) code for ``spec``; raises only for setup problems.

    Problems with the *reply* (no code, syntax errors, a failed run) do not
    raise: they are in ``Generation.attempts`` and ``Generation.report``.
    """
    opts = replace(options or Options(), **overrides)
    if opts.tutor:  # a withheld full solution must not be kept in the user's cache
        opts = replace(opts, cache=False)
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    completer = _Completer(opts, spec)
    completer.on_thinking = on_thinking
    completer.usable = _gives_code
    completer.guard = (opts.guard or Guard()).with_max_cost(opts.max_cost)
    if opts.tutor:  # a full solution must not stream past the tutor check
        on_chunk = on_thinking = completer.on_thinking = None
    if opts.tests and not opts.run:
        raise ConfigurationError("--test needs a run: add --run (the tests call the script's "
                                 "functions in the sandbox).")
    session_ready(opts)
    if opts.run:
        engine_ready(opts)  # a missing engine is said before any paid request
    available = sandbox_modules(opts)
    facts = sandbox_facts(opts)
    env = {"environment": environment_text(facts)} if facts is not None else {}
    prompt = build_prompt(spec, extra_system=tutor_system(opts.system, opts.tutor),
                          context=opts.context, history=opts.history, **env)
    gen = Generation(spec, prompt, completer.label, sent=opts.sent)
    messages = prompt.messages
    t0 = time.monotonic()
    for n in range(opts.retries + 1):
        request = Request(completer.model, prompt.system, messages, opts.max_tokens,
                          opts.temperature, thinking_tokens=opts.thinking or None)
        reply, key, source = completer.complete(request, n, on_chunk, cancel)
        gen.timing.setdefault("reply_s", time.monotonic() - t0)
        gen.usage = gen.usage + reply.usage
        gen.entries.append(reply_to_entry(key, reply))
        attempt = _attempt(reply, spec, opts, available, source, facts)
        gen.attempts.append(attempt)
        budget = opts.budget_tokens
        spent = gen.usage.input_tokens + gen.usage.output_tokens
        attempt.will_retry = (attempt.repairable and n < opts.retries
                              and not (budget and spent >= budget)
                              and (not opts.tutor or gave_solution(attempt)))
        if opts.tutor:
            hide_solution(attempt)
        if on_attempt:
            on_attempt(attempt)
        if not attempt.will_retry:
            break
        messages = (*messages, Message("assistant", reply.text),
                    repair_message(_repair_report(attempt)))
    gen.timing["total_s"] = time.monotonic() - t0
    if opts.tutor:
        withhold_solution(gen)
    if opts.audit_log:
        from .audit import log_generation

        log_generation(opts.audit_log, gen, opts)
    return gen


def succeeded(record: dict[str, Any]) -> bool:
    """Whether a recorded generation succeeded (records made before "ok": it gave code)."""
    return bool(record.get("ok", record.get("code") is not None))


def _gives_code(reply: Reply) -> bool:
    """Whether code can be taken from a reply: one that gives none is not served again."""
    from .extract import extract_code

    try:
        extract_code(reply.text, truncated=reply.truncated)
    except ExtractionError:
        return False
    return True


def _attempt(reply: Reply, spec: Spec, opts: Options, available: frozenset[str] | None,
             source: str, facts: ImageFacts | None = None) -> Attempt:
    from .extract import extract_code

    try:
        found = extract_code(reply.text, truncated=reply.truncated)
    except ExtractionError as err:
        report = ValidationReport([*_model_notes(reply),
                                   Check("extract", "fail", str(err), layer="extract")])
        return Attempt(reply.text, None, report, reply.usage, reply.stop_reason, error=str(err),
                       source=source)
    attempt = Attempt(reply.text, found.code, ValidationReport([]), reply.usage,
                      reply.stop_reason, source=source)
    _check(attempt, spec, opts, available, tree=found.tree,  # parsed once, by extraction
           facts=facts)
    if opts.tutor:
        attempt.report.add(tutor_check(attempt))
    how = "; ".join((f"code taken from the reply: {found.how}", *found.notes))
    attempt.report.checks[:0] = [*_model_notes(reply), Check("extract", "pass", how,
                                                             layer="extract")]
    return attempt


def _model_notes(reply: Reply) -> list[Check]:
    """What the provider said about the request (an option the model lacks): warnings."""
    return [Check("model", "warn", note, layer="model") for note in reply.notes]


def _check(attempt: Attempt, spec: Spec, opts: Options,
           available: frozenset[str] | None, tree: ast.Module | None = None,
           facts: ImageFacts | None = None) -> None:
    """Static layers, then (when asked and they pass) the sandbox run and its checks."""
    assert attempt.code is not None
    report = validate(attempt.code, tree=tree, available=available,
                      allow_imports=_set(opts.allow_imports),
                      deny_imports=_set(opts.deny_imports), strict=opts.strict)
    attempt.report = report
    parity = _parity(attempt.code, tree, opts, facts) if report.ok else None
    if parity is not None and parity.status != "pass":  # only a difference is worth a line
        report.add(parity)
        if parity.status == "fail":
            attempt.error = parity.message  # the environment's fault: not sent for repair
    if opts.run and report.ok:
        try:
            attempt.run = _run(attempt, spec, opts, report)
            if parity is not None and parity.status == "warn":  # shown on the run too
                attempt.run.warning = "; ".join(filter(None, [attempt.run.warning,
                                                              parity.message]))
        except SandboxError as err:  # the engine's fault, not the code's: do not repair
            attempt.error = str(err)
            report.add(Check("run", "fail", str(err), layer="run"))


def check_code(code: str, spec: str | Spec = "", options: Options | None = None,
               **overrides: Any) -> Attempt:
    """Validate (and with ``run=True`` run) code that is already written, e.g. edited by hand."""
    opts = replace(options or Options(), **overrides)
    session_ready(opts)
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    attempt = Attempt("", code, ValidationReport([]), Usage(), None, source="user")
    _check(attempt, spec, opts, sandbox_modules(opts), facts=sandbox_facts(opts))
    return attempt


def _parity(code: str, tree: ast.Module | None, opts: Options,
            facts: ImageFacts | None) -> Check | None:
    """Kernel vs image versions of what the code imports (see ``parity.py``)."""
    if facts is None or opts.sandbox != "docker" or not opts.run:
        return None  # a cell that is not run here runs only in the kernel: nothing to compare
    from .validate import imported_modules

    modules = imported_modules(tree if tree is not None else ast.parse(code))
    return parity_check(modules, facts, image=sandbox_image(opts), refuse=opts.strict_versions)


def _set(value: frozenset[str] | None) -> set[str] | None:
    return set(value) if value is not None else None


__all__ = ["Attempt", "Generation", "Options", "check_code", "generate"]
