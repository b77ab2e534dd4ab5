import functools

from django.apps import AppConfig
from django_prometheus.db import common as prometheus_db


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform records"

    def ready(self):
        cache_cursor_classes()


def cache_cursor_classes() -> None:
    """django_prometheus' SQLite backend builds a new cursor class for every cursor, that is for every SQL
    statement (~25 us each, and cyclic garbage for the collector); one class per (cursor class, database
    alias, vendor) counts the same metrics. Its PostgreSQL backend builds one per connection already."""
    if not hasattr(prometheus_db.ExportingCursorWrapper, "cache_info"):
        prometheus_db.ExportingCursorWrapper = functools.lru_cache(maxsize=None)(prometheus_db.ExportingCursorWrapper)
