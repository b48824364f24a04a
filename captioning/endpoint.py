"""OpenAI-compatible chat endpoint writer (vLLM, llama.cpp server, text-generation-inference, hosted APIs).

A writer of the caption flow (facts -> **writer** -> shards); see ``model_writer.py`` for the prompt, validation and
template fallback it shares with the local transformers writer. This module only talks HTTP: ``POST
{base_url}/chat/completions`` with the standard body, the key from an environment variable (never from the command
line, so it does not land in shell history or the run's report), retries with exponential backoff on connection
errors, 429 and 5xx, a client-side rate limit (requests per second, shared by all threads) and a thread pool for
concurrency (``write_many``). After ``max_consecutive_failures`` calls in a row fail to connect, the endpoint is
taken as unreachable and the rest of the run uses templates right away (each sample's fallback is recorded).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

from .model_writer import ModelWriter, WriterError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RateLimiter:
    """At most ``rate`` calls per second across threads (``rate <= 0``: no limit)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class OpenAIChatWriter(ModelWriter):
    """Captions from ``{base_url}/chat/completions``. ``api_key_env`` names the variable holding the key."""

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        fallback=None,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 60.0,
        rate_limit: float = 0.0,
        concurrency: int = 4,
        temperature: float = 0.7,
        max_tokens: int = 400,
        send_image: bool = False,
        max_consecutive_failures: int = 5,
    ):
        super().__init__(fallback=fallback, concurrency=concurrency, uses_image=send_image)
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.timeout = float(timeout)
        self.limiter = RateLimiter(rate_limit)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.max_consecutive_failures = int(max_consecutive_failures)
        self._failures = 0
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def unreachable(self) -> bool:
        return self.max_consecutive_failures > 0 and self._failures >= self.max_consecutive_failures

    def _body(self, messages: List[Dict[str, str]], image: Optional[bytes]) -> bytes:
        if image is not None:  # vision models: the image goes into the user message as a data URL
            url = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
            user = messages[-1]
            messages = messages[:-1] + [{"role": "user", "content": [
                {"type": "text", "text": user["content"]}, {"type": "image_url", "image_url": {"url": url}},
            ]}]
        return json.dumps({
            "model": self.model, "messages": messages, "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }).encode("utf-8")

    def generate(self, messages: List[Dict[str, str]], image: Optional[bytes] = None) -> str:
        if self.unreachable:
            raise WriterError(f"endpoint {self.url} unreachable ({self._failures} connection failures in a row); using templates")
        body = self._body(messages, image)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            self.limiter.wait()
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            with self._lock:
                self.calls += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                with self._lock:
                    self._failures = 0
                try:
                    return payload["choices"][0]["message"]["content"] or ""
                except (KeyError, IndexError, TypeError):
                    raise WriterError("endpoint answer has no choices[0].message.content") from None
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code} from {self.url}"
                if e.code not in RETRY_STATUS:
                    raise WriterError(last) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = f"cannot reach {self.url} ({reason})"
                with self._lock:
                    self._failures += 1
                if self.unreachable:
                    break
            except json.JSONDecodeError:
                raise WriterError(f"endpoint {self.url} did not answer JSON") from None
        raise WriterError(f"{last} after {attempt + 1} attempt(s)")
