from __future__ import annotations

from pydantic import BaseModel, Field


class QuestionIn(BaseModel):
    content: str = Field(min_length=1, max_length=8000)
    stream: bool = False
