"""The one filter backend of every list: django-filter FilterSets, and no query parameter it does not know.

`?stauts=failed` used to return every task. The backend (REST_FRAMEWORK's DEFAULT_FILTER_BACKENDS)
refuses a list request naming a parameter that is neither one of the view's filters, `ordering`, the
paginator's `page` / `page_size`, nor DRF's `format`: 400 validation_error naming it. A filter's bad
value (`?status=nope`, `?agent=x`, `?ordering=colour`) is a validation_error on that filter too.
drf-spectacular documents each FilterSet's parameters in the OpenAPI schema.
"""
from datetime import timezone as dt_timezone

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework.settings import api_settings

from .errors import ValidationFailed


def refuse_unknown_query_parameters(request, allowed) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        listed = ", ".join(sorted(allowed)) or "none"
        raise ValidationFailed(
            f"Unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            details={name: [f"Unknown query parameter; allowed: {listed}"] for name in unknown},
        )


class FilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend that also refuses unknown query parameters (filters + pagination + format)."""

    def filter_queryset(self, request, queryset, view):
        refuse_unknown_query_parameters(request, self.allowed_parameters(request, queryset, view))
        return super().filter_queryset(request, queryset, view)

    def allowed_parameters(self, request, queryset, view) -> set[str]:
        allowed = {api_settings.URL_FORMAT_OVERRIDE} if api_settings.URL_FORMAT_OVERRIDE else set()
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            allowed |= set(filterset_class.base_filters)
        paginator = getattr(view, "paginator", None)
        for attribute in ("page_query_param", "page_size_query_param"):
            if getattr(paginator, attribute, None):
                allowed.add(getattr(paginator, attribute))
        return allowed


@extend_schema_field({"type": "integer", "minimum": 1})
class IdFilter(django_filters.NumberFilter):
    """An object id: a positive whole number (`?agent=1.5` or `?agent=0` is refused, not rounded); one past the
    database's range is refused too instead of failing the query."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class _UtcDateTimeField(IsoDateTimeField):
    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:  # any offset the parser takes (-16:26) as UTC, which the database takes too
            return value.astimezone(dt_timezone.utc)
        except (OverflowError, ValueError):
            raise forms.ValidationError("Out of range", code="invalid") from None


class MomentFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time (with an offset, or UTC), compared in UTC."""

    field_class = _UtcDateTimeField


class OrderingFilter(django_filters.OrderingFilter):
    """`?ordering=field` or `-field` (comma separated); the id breaks ties so pages never overlap."""

    def filter(self, qs, value):
        if value in ([], (), {}, "", None):
            return qs
        fields = [self.get_ordering_value(param) for param in value]
        last = fields[-1]
        return qs.order_by(*fields, "-pk" if last.startswith("-") else "pk")


def ordering(*fields: str, help_text: str = "") -> OrderingFilter:
    return OrderingFilter(fields=[(f, f) for f in fields],
                          help_text=help_text or f"Sort by {', '.join(fields)}; prefix with - for descending.")
