from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool, field_validator

# Ingest refuses longer queries (query_too_long); say so here, before anything is stored.
MAX_QUESTION_CHARS = 2000


class QuestionIn(BaseModel):
    content: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    stream: StrictBool = False  # "yes" or 1 is a 422, not a guess

    @field_validator("content")
    @classmethod
    def _not_blank(cls, content: str) -> str:
        if not content.strip():
            raise ValueError("the question is empty")
        return content.strip()
