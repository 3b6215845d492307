"""Fakes for external services that tests talk to over real HTTP."""

from .openai_server import CITED_ANSWER, NO_ANSWER, FakeOpenAI, Fault, RecordedRequest

__all__ = ["CITED_ANSWER", "NO_ANSWER", "FakeOpenAI", "Fault", "RecordedRequest"]
