"""Answering a question: quota → session → retrieval → prompt → model → stored answer.

The model call runs outside any database transaction: a session is read (and the question
stored) in short transactions before it, the answer and its events stored in one after it.
A streamed answer whose client goes away is closed upstream, stored as incomplete and metered
for what was generated. A provider failure keeps the question, stores no answer, charges nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from docuchat_chat.answering.prompt import (
    NOT_IN_DOCUMENTS,
    NumberedPassage,
    build_messages,
    cited,
    llm_passages,
    relevant,
)
from docuchat_chat.answering.retrieval import RetrievalClient
from docuchat_chat.llm.port import (
    ChatMessage,
    LLMProvider,
    LLMRequest,
    ProviderError,
    Usage,
)
from docuchat_chat.llm.registry import ProviderRegistry
from docuchat_chat.llm.tokens import TokenCounter
from docuchat_chat.llm_settings.crypto import KeyVault
from docuchat_chat.llm_settings.repository import LLMSettingsRepository
from docuchat_chat.llm_settings.service import LLMSettingsService
from docuchat_chat.models import ChatSession, Message
from docuchat_chat.sessions.repository import SessionRepository
from docuchat_chat.sessions.schemas import MessageOut
from docuchat_chat.sessions.service import SessionService, message_out, title_from
from docuchat_chat.settings import ChatSettings
from docuchat_common.db import Database
from docuchat_common.errors import DocuChatError
from docuchat_common.events.catalog import (
    MessageCompleted,
    MessageCompletedData,
    TokensConsumed,
    TokensConsumedData,
)
from docuchat_common.events.envelope import utcnow
from docuchat_common.events.outbox import Outbox
from docuchat_common.identity import Identity
from docuchat_common.logging import get_logger
from docuchat_common.quota import QuotaGuard

log = get_logger(__name__)

# Earlier messages read for the conversation history (then trimmed to the token budget).
HISTORY_MESSAGES = 20
CHAT_TOKEN_LIMITS = ("daily_tokens", "monthly_tokens")


class ProviderFailed(DocuChatError):
    """The model could not answer: the provider's status (502/503/504) and stable code."""

    title = "Language model failed"

    def __init__(self, error: ProviderError) -> None:
        headers = (
            {"Retry-After": str(max(1, round(error.retry_after)))}
            if error.retry_after is not None
            else None
        )
        super().__init__(
            str(error) or "the language model failed", code=error.code, headers=headers
        )
        self.status = error.status


@dataclass
class Answer:
    """What an answer is made of before it is stored."""

    text: str
    usage: Usage
    complete: bool


@dataclass
class Question:
    """A question ready for the model: stored, its passages retrieved, its prompt built."""

    identity: Identity
    session_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    message_id: uuid.UUID
    passages: list[NumberedPassage]
    model: str
    provider: LLMProvider | None  # None: nothing relevant, no model call
    request: LLMRequest | None
    # False for a provider that runs no model (extractive): its counts are stored, not charged.
    metered: bool = True

    @property
    def asks_model(self) -> bool:
        """False when no passage was relevant: the fixed reply, no model, no tokens."""
        return self.provider is not None


@dataclass(frozen=True)
class Deps:
    database: Database
    outbox: Outbox
    quota: QuotaGuard | None
    retrieval: RetrievalClient
    providers: ProviderRegistry
    counter: TokenCounter
    vault: KeyVault
    settings: ChatSettings


class AnswerService:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    # --- before the model ---------------------------------------------------------------------

    async def session_of(self, identity: Identity, session_id: uuid.UUID) -> ChatSession:
        """The caller's session, or 404 ``session_not_found``."""
        async with self.deps.database.transaction() as db:
            return await SessionService(SessionRepository(db)).owned(identity, session_id)

    async def ask(
        self,
        identity: Identity,
        session_id: uuid.UUID,
        content: str,
        identity_headers: Mapping[str, str],
    ) -> Question:
        deps = self.deps
        async with deps.database.transaction() as db:
            # A session that is not the caller's is a 404 even for a spent tenant.
            chat = await SessionService(SessionRepository(db)).owned(identity, session_id)
            if deps.quota is not None:  # before any retrieval or model call
                deps.quota.check(identity.tenant_id, *CHAT_TOKEN_LIMITS)
            config = await LLMSettingsService(
                LLMSettingsRepository(db), deps.vault, deps.quota
            ).provider_config(identity.tenant_id, deps.providers.default_config())
        if deps.quota is not None:
            deps.quota.check_fixed(identity.tenant_id, model=config.model)

        # The search and storing the question are independent: run them side by side, so the
        # database's round trips hide behind the search's.
        found, stored = await asyncio.gather(
            deps.retrieval.search(
                chat.knowledge_base_id,
                content,
                top_k=deps.settings.retrieval_top_k,
                identity_headers=identity_headers,
            ),
            self._store_question(identity, chat, content),
            return_exceptions=True,
        )
        if isinstance(stored, BaseException):
            raise stored
        question_id, history = stored
        if isinstance(found, BaseException):
            await self._set_status(identity, question_id, "failed")
            raise found
        passages = relevant(found.hits, deps.settings.relevance_threshold)

        if not passages:
            return Question(
                identity, chat.id, chat.knowledge_base_id, question_id, [], config.model, None, None
            )
        messages = build_messages(
            system_prompt=found.knowledge_base.system_prompt,
            passages=passages,
            history=[
                ChatMessage("assistant" if m.role == "assistant" else "user", m.content)
                for m in history
            ],
            question=content,
            counter=deps.counter,
            model=config.model,
            history_budget=deps.settings.history_token_budget,
        )
        request = LLMRequest(
            messages=messages,
            passages=llm_passages(passages),
            max_tokens=deps.settings.max_answer_tokens,
        )
        return Question(
            identity,
            chat.id,
            chat.knowledge_base_id,
            question_id,
            passages,
            config.model,
            deps.providers.provider(config),
            request,
            metered=config.kind != "extractive",
        )

    async def _store_question(
        self, identity: Identity, chat: ChatSession, content: str
    ) -> tuple[uuid.UUID, list[Message]]:
        """The conversation so far, then the question (pending until answered)."""
        async with self.deps.database.transaction() as db:
            repository = SessionRepository(db)
            history = await repository.recent_messages(chat, HISTORY_MESSAGES)
            question = Message(
                id=uuid.uuid4(),
                session_id=chat.id,
                tenant_id=identity.tenant_id,
                role="user",
                content=content,
                citations=[],
                complete=True,
                status="pending",
                created_at=utcnow(),
            )
            await repository.add_message(question)
            if chat.title is None:
                await repository.set_title(identity.tenant_id, chat.id, title_from(content))
        return question.id, history

    async def _set_status(self, identity: Identity, message_id: uuid.UUID, status: str) -> None:
        async with self.deps.database.transaction() as db:
            await SessionRepository(db).set_message_status(identity.tenant_id, message_id, status)

    # --- the model ----------------------------------------------------------------------------

    async def complete(self, question: Question) -> MessageOut:
        """The whole answer at once (stream=false)."""
        if question.provider is None or question.request is None:
            return await self.store(question, Answer(NOT_IN_DOCUMENTS, Usage(0, 0), True))
        try:
            completion = await question.provider.complete(question.request)
        except ProviderError as exc:
            raise await self.failed(question, exc) from exc
        return await self.store(question, Answer(completion.text, completion.usage, True))

    def stream(self, question: Question) -> AnswerStream:
        return AnswerStream(self, question)

    # --- after the model ----------------------------------------------------------------------

    def counted_usage(self, question: Question, text: str) -> Usage:
        """Tokens of a call whose provider reported none (an answer cut short)."""
        counter, model = self.deps.counter, question.model
        prompt = counter.count_messages(question.request.messages, model) if question.request else 0
        return Usage(
            prompt, counter.count_text(text, model), reported=False, metered=question.metered
        )

    async def store(self, question: Question, answer: Answer) -> MessageOut:
        """The answer, its citations and usage, and its events, in one transaction."""
        deps, identity = self.deps, question.identity
        citations = cited(answer.text, question.passages) if question.asks_model else []
        usage = answer.usage if question.asks_model else Usage(0, 0, metered=False)
        # Grounded: backed by passages it cites. A model that cites none (it found no answer in
        # them, or ignored the instruction) gives an answer the documents do not vouch for.
        grounded = bool(citations)
        async with deps.database.transaction() as db:
            repository = SessionRepository(db)
            message = Message(
                id=uuid.uuid4(),
                session_id=question.session_id,
                tenant_id=identity.tenant_id,
                role="assistant",
                content=answer.text,
                grounded=grounded,
                citations=citations,
                usage={
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                    "metered": usage.metered and question.metered,
                },
                model=question.model if question.asks_model else None,
                complete=answer.complete,
                status="complete" if answer.complete else "incomplete",
                created_at=utcnow(),
            )
            # The session may have been deleted while the model answered: still meter the call.
            if await repository.exists(identity.tenant_id, question.session_id):
                await repository.add_message(message)
                await repository.set_message_status(
                    identity.tenant_id, question.message_id, "answered"
                )
                await repository.touch(identity.tenant_id, question.session_id, message.created_at)
            events: list[Any] = [
                MessageCompleted(
                    tenant_id=identity.tenant_id,
                    source="chat",
                    data=MessageCompletedData(
                        session_id=question.session_id,
                        message_id=message.id,
                        user_id=identity.user_id,
                        knowledge_base_id=question.knowledge_base_id,
                        grounded=grounded,
                        citations=len(citations),
                        complete=answer.complete,
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                    ),
                )
            ]
            if usage.metered and question.metered and usage.total_tokens > 0:
                events.append(
                    TokensConsumed(
                        tenant_id=identity.tenant_id,
                        source="chat",
                        data=TokensConsumedData(
                            user_id=identity.user_id,
                            kind="chat",
                            model=question.model,
                            prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens,
                            reference=str(message.id),
                        ),
                    )
                )
            await deps.outbox.add(db, *events)
        if deps.quota is not None and usage.metered and question.metered:
            # Counted here at once: the next question of a tenant at its limit must not wait
            # for usage to meter this one (the quota overshoot stays within what was in flight).
            deps.quota.debit(identity.tenant_id, usage.total_tokens)
        return message_out(message)

    async def failed(self, question: Question, error: ProviderError) -> ProviderFailed:
        """The question stays (marked failed); no answer is stored and nothing is charged."""
        log.warning("llm call failed", code=error.code, status=error.status, model=question.model)
        await self._set_status(question.identity, question.message_id, "failed")
        return ProviderFailed(error)


class AnswerStream:
    """One streamed answer. ``start()`` waits for the first delta (a failing provider is an
    error response, not an empty stream); ``deltas()`` yields the text; ``finish()`` stores it.
    ``abandon()`` is for a client that went away: close upstream, store what came, meter it."""

    def __init__(self, service: AnswerService, question: Question) -> None:
        self.service = service
        self.question = question
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self._iterator: AsyncIterator[str | Usage] | None = None
        self._first: str | None = None
        self._exhausted = False  # the provider sent its whole answer
        self._done = False

    async def start(self) -> None:
        question = self.question
        if question.provider is None or question.request is None:
            self._first = NOT_IN_DOCUMENTS
            return
        self._iterator = question.provider.stream(question.request)
        try:
            while self._first is None:
                item = await anext(self._iterator)
                if isinstance(item, Usage):
                    self.usage = item
                elif item:
                    self._first = item
        except StopAsyncIteration:
            self._first = ""
        except ProviderError as exc:
            await self._close()
            raise await self.service.failed(question, exc) from exc

    async def deltas(self) -> AsyncGenerator[str, None]:
        """Text deltas; raises :class:`ProviderFailed` when the provider fails midway."""
        if self._first:
            self.parts.append(self._first)
            yield self._first
        if self._iterator is None:
            self._exhausted = True
            return
        try:
            async for item in self._iterator:
                if isinstance(item, Usage):
                    self.usage = item
                elif item:
                    self.parts.append(item)
                    yield item
            self._exhausted = True
        except ProviderError as exc:
            await self._close()
            self._done = True
            raise await self.service.failed(self.question, exc) from exc

    async def finish(self) -> MessageOut:
        self._done = True
        text = "".join(self.parts)
        usage = self.usage or self.service.counted_usage(self.question, text)
        return await self.service.store(self.question, Answer(text, usage, True))

    async def abandon(self) -> None:
        """The client went away: stop generating, store the partial answer and meter it."""
        if self._done:
            return
        self._done = True
        await self._close()
        text = "".join(self.parts)
        usage = self.usage or self.service.counted_usage(self.question, text)
        await self.service.store(self.question, Answer(text, usage, self._exhausted))

    async def _close(self) -> None:
        iterator, self._iterator = self._iterator, None
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception as exc:  # closing must not hide why we are closing
                log.warning("closing the llm stream failed", error=type(exc).__name__)
