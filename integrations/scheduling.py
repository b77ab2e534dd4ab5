"""When a schedule fires: cron expressions (croniter) in an IANA time zone (zoneinfo), or fixed intervals.

Pure functions of the schedule's fields and a time; no database."""
from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError


def cron_errors(expression: str) -> list[str]:
    """Problems with a five-field cron expression (minute hour day-of-month month day-of-week), or []."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        return ["Five fields: minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'"]
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=dt_timezone.utc)).get_next(datetime)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        return [f"Not a valid cron expression: {exc}"]
    return []


def timezone_errors(name: str) -> list[str]:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return [f"Unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"]
    return []


def next_runs(*, cron: str, interval_seconds: int | None, tz: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` firing times strictly after `after`, in UTC.

    A cron expression is read in the schedule's time zone (so "0 9 * * *" is 09:00 local time on
    both sides of a daylight-saving change); an interval counts from `after`."""
    if interval_seconds:
        return [after + timedelta(seconds=interval_seconds * (i + 1)) for i in range(count)]
    iterator = croniter(cron, after.astimezone(ZoneInfo(tz)))
    return [iterator.get_next(datetime).astimezone(dt_timezone.utc) for _ in range(count)]


def next_after_firing(*, cron: str, interval_seconds: int | None, tz: str, planned: datetime, now: datetime) -> datetime:
    """The next firing once the one planned at `planned` happened at `now`.

    Missed firings are not replayed: after a downtime a schedule fires once, then at its next time in
    the future (an interval restarts from now when its next slot is already past)."""
    if interval_seconds:
        following = planned + timedelta(seconds=interval_seconds)
        return following if following > now else now + timedelta(seconds=interval_seconds)
    return next_runs(cron=cron, interval_seconds=None, tz=tz, after=max(planned, now))[0]
