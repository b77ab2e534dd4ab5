"""Serializer pieces shared by the customer API: references to the caller's own objects."""
from rest_framework import serializers


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


class StrictSerializer(serializers.Serializer):
    """A nested object that refuses keys it does not declare (instead of silently dropping them)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"Unknown key; allowed: {', '.join(self.fields)}"] for key in unknown}
                )
        return super().to_internal_value(data)


class StringField(serializers.CharField):
    """A JSON string, not a number turned into one."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
