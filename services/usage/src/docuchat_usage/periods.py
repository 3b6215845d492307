"""UTC periods: the day and the month quotas count in, and when they reset."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

NIL_USER = "00000000-0000-0000-0000-000000000000"


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def month_of(moment: datetime) -> date:
    return day_of(moment).replace(day=1)


def next_midnight(moment: datetime) -> datetime:
    return datetime.combine(day_of(moment) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def next_month_start(moment: datetime) -> datetime:
    first = month_of(moment)
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime.combine(following, datetime.min.time(), tzinfo=UTC)
