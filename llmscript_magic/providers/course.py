"""The ``course`` provider: generations go through the course's hub service.

On a JupyterHub course the provider's key lives only in the hub service
(``llmscript_magic._course.service``). A student's kernel names a model as
``course:anthropic:claude-haiku-5``; this provider sends the request to the service
with the student's own hub token (``$JUPYTERHUB_API_TOKEN``, which the hub gives
every server), and the service checks the student's budget, the allowed models and
the rate, then forwards it with the course's key. The service answers with
newline-delimited JSON: ``{"text": ...}`` chunks, then ``{"done": true, ...}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from dataclasses import asdict
from typing import Any

from .._errors import (
    AuthenticationError,
    BudgetError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from .base import Provider, Reply, Request, Usage, one_line

URL_ENV = "LLMSCRIPT_COURSE_URL"
TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
_ERRORS: dict[int, type[ProviderError] | type[ConfigurationError] | type[BudgetError]] = {
    401: AuthenticationError, 402: BudgetError, 403: ConfigurationError, 429: RateLimitError}


class CourseProvider(Provider):
    """The course's hub service; the model is the upstream ``provider:model`` it forwards to."""

    name = "course"
    key_env_var = None  # the credential is the student's hub token, not a provider key
    default_model = "default"  # the service's first allowed model

    def _url(self) -> str:
        url = self.base_url or os.environ.get(URL_ENV, "")
        if not url:
            raise ConfigurationError(f"The course provider needs the service's address: the hub "
                                     f"sets {URL_ENV}; ask your teacher.")
        return url.rstrip("/") + "/v1/generate"

    def _token(self) -> str:
        # never GenerateMagics.api_key: that is a provider's key, not for the service's eyes
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            raise AuthenticationError(f"No hub token ({TOKEN_ENV}): the course provider works in "
                                      "a server started by the course's JupyterHub.")
        return token

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self._api_key, os.environ.get(TOKEN_ENV)) if s)

    def api_key(self) -> str | None:
        return None  # the hub token is checked when the request is made

    def stream(self, request: Request, reply: Reply) -> Generator[str, None, None]:
        """POST the request; yield the service's text chunks; fill usage from its last line."""
        import httpx2

        url, token = self._url(), self._token()
        payload = {**asdict(request), "messages": [asdict(m) for m in request.messages]}
        parts: list[str] = []
        try:
            with httpx2.Client(timeout=self.timeout) as client, client.stream(
                    "POST", url, json=payload,
                    headers={"Authorization": f"token {token}"}) as resp:
                if resp.status_code != 200:
                    raise self._refused(resp.status_code, resp.read())
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    event: dict[str, Any] = json.loads(line)
                    if "error" in event:
                        raise ProviderError(one_line(str(event["error"]), token))
                    if "text" in event:
                        parts.append(event["text"])
                        yield event["text"]
                    if event.get("done"):
                        reply.usage = Usage(**event.get("usage", {}))
                        reply.stop_reason = event.get("stop_reason")
                        reply.model = event.get("model")
                        reply.thinking = event.get("thinking", "")
        except httpx2.TimeoutException as err:
            raise ProviderTimeoutError(f"The course service did not answer within "
                                       f"{self.timeout:g} s: run the cell again.") from err
        except httpx2.TransportError as err:
            raise ProviderConnectionError(f"Could not reach the course service at {url}: ask "
                                          "your teacher whether it is running.") from err
        finally:
            reply.text = "".join(parts)

    def status(self) -> dict[str, Any]:
        """The student's spending and the course's budgets, as the service counts them."""
        import httpx2

        url = self._url().removesuffix("v1/generate") + "v1/me"
        try:
            resp = httpx2.get(url, headers={"Authorization": f"token {self._token()}"},
                              timeout=min(self.timeout, 10))
        except httpx2.HTTPError as err:
            raise ProviderConnectionError(f"Could not reach the course service at {url}: ask "
                                          "your teacher whether it is running.") from err
        if resp.status_code != 200:
            raise self._refused(resp.status_code, resp.content)
        data: dict[str, Any] = resp.json()
        return data

    @staticmethod
    def _refused(status: int, body: bytes) -> Exception:
        """The service's one-line refusal as the matching error (budget, rate, model, auth)."""
        try:
            message = str(json.loads(body).get("error", ""))
        except ValueError:
            message = ""
        if not message and status == 403:
            message = ("The course service did not accept your hub token (403): restart your "
                       "server from the hub's control panel, or ask your teacher.")
        message = message or f"The course service answered {status}: ask your teacher."
        return _ERRORS.get(status, ProviderError)(one_line(message))
