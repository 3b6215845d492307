"""PATCH bodies: present fields change, unknown fields and clearing a required one are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from docuchat_common.schemas import PatchModel


class Patch(PatchModel):
    not_clearable = frozenset({"name"})

    name: str | None = None
    note: str | None = None


def test_only_the_fields_sent_are_set_and_null_clears_a_clearable_one() -> None:
    patch = Patch.model_validate({"note": None})
    assert patch.model_fields_set == {"note"}
    assert Patch.model_validate({"name": "x"}).name == "x"


@pytest.mark.parametrize(
    ("body", "message"),
    [({"name": None}, "name cannot be null"), ({"nmae": "x"}, "Extra inputs are not permitted")],
)
def test_a_typo_or_clearing_a_required_field_is_refused(
    body: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Patch.model_validate(body)
