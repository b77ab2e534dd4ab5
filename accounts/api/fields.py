"""Serializer pieces shared by the customer API: references to the caller's own objects."""
from rest_framework import serializers

from autogen_platform.serializers import Serializer as StrictSerializer  # noqa: F401 - nested objects refuse unknown keys too


class CustomerPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """An id of one of the caller's own objects; another customer's id reads exactly like a missing one."""

    def get_queryset(self):
        queryset = super().get_queryset()
        request = self.context.get("request")
        user = getattr(request, "user", None)
        membership = getattr(user, "membership", None) if user is not None and user.is_authenticated else None
        if membership is None:
            return queryset.none()
        return queryset.filter(customer_id=membership.customer_id)


class StringField(serializers.CharField):
    """A JSON string, not a number turned into one."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
