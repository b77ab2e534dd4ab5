"""The serializer bases of every API body: a key a serializer does not declare is refused, not dropped.

`{"system_mesage": ...}` used to create an agent with an empty system message. Every serializer that
reads a request body (top level or nested) derives from `Serializer` or `ModelSerializer` here (or
mixes in `RefuseUnknownFieldsMixin`), so a typo is a 400 validation_error naming the key.
tests/test_unknown_fields.py sends an unknown key to every operation of the OpenAPI schema that takes a
body, so a serializer that forgets the base is caught.

Read-only fields (id, status, created_at...) are known keys: a body read from GET and sent back is
accepted, and they are ignored, as the schema says.
"""
import copy
from collections.abc import Mapping

from rest_framework import serializers


def unknown_field_errors(data, known, read_only=()) -> dict:
    """{key: [message]} for the keys of `data` that are not in `known` (empty when all are known). The
    message lists the keys one can set, and apart the read-only ones (accepted, ignored)."""
    if not isinstance(data, Mapping):
        return {}
    unknown = sorted(str(key) for key in data if key not in known)
    if not unknown:
        return {}
    allowed = ", ".join(sorted(set(known) - set(read_only))) or "none"
    ignored = f"; read-only (accepted, ignored): {', '.join(sorted(read_only))}" if read_only else ""
    return {key: [f"Unknown field; allowed: {allowed}{ignored}"] for key in unknown}


class RefuseUnknownFieldsMixin:
    """A body key that is not one of the serializer's fields is a validation error on that key."""

    def to_internal_value(self, data):
        unknown = unknown_field_errors(data, set(self.fields),
                                       {name for name, field in self.fields.items() if field.read_only})
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            # Report the unknown keys together with the other fields' errors.
            if unknown and isinstance(exc.detail, dict):
                exc.detail.update({key: [serializers.ErrorDetail(m, code="unknown_field") for m in messages]
                                   for key, messages in unknown.items()})
            raise
        if unknown:
            raise serializers.ValidationError(unknown, code="unknown_field")
        return value


class Serializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    pass


class ModelSerializer(RefuseUnknownFieldsMixin, serializers.ModelSerializer):
    pass


class ClassCachedFieldsMixin:
    """For a ModelSerializer whose fields depend on its class alone (no get_fields override, nothing taken
    from the context or the instance): the fields ModelSerializer.get_fields builds from the model (field
    info, kwargs, a Field built for each) are built once per class, and each instance gets a deep copy, as
    DRF itself copies declared fields. DRF rebuilds them for every instance: for TaskSerializer, which
    answers every task creation and read, 1.1 ms a response against 0.6 ms copied (measured on a 2-core
    VM). DRF has no such cache by design (fields may depend on the context), hence this mixin, kept to the
    serializers where they do not."""

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_class_fields")
        if built is None:
            built = super().get_fields()
            cls._class_fields = built  # two threads may both build it first: the same fields either way
        return copy.deepcopy(built)
