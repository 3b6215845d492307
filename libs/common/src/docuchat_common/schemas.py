"""Request body conventions shared by every service."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator


class PatchModel(BaseModel):
    """A PATCH body: the fields present are changed, the rest kept.

    Unknown fields are refused (422): a misspelt field would otherwise pass as a silent no-op.
    ``null`` clears a field, except the ones named in ``not_clearable`` (a name, a setting),
    where it is refused rather than ignored.
    """

    model_config = ConfigDict(extra="forbid")
    not_clearable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _refuse_clearing(cls, data: Any) -> Any:
        if isinstance(data, dict):
            cleared = sorted(f for f in cls.not_clearable if f in data and data[f] is None)
            if cleared:
                raise ValueError(
                    f"{', '.join(cleared)} cannot be null: leave a field out to keep it"
                )
        return data
