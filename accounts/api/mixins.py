"""What every customer-scoped view shares: numeric ids in URLs, schema generation without a user, writes via services."""
from rest_framework import status
from rest_framework.response import Response


class CustomerScopedViewMixin:
    lookup_value_regex = r"[0-9]+"
    # The model whose empty queryset stands in while drf-spectacular inspects the view without a user.
    schema_model = None

    @property
    def is_schema_generation(self) -> bool:
        return getattr(self, "swagger_fake_view", False)

    def get_queryset(self):
        if self.is_schema_generation:
            return self.schema_model.objects.none()
        return self.scoped_queryset()

    def scoped_queryset(self):
        raise NotImplementedError

    def get_object(self):
        obj = self.get_scoped_object(self.kwargs[self.lookup_url_kwarg or self.lookup_field])
        self.check_object_permissions(self.request, obj)
        return obj

    def get_scoped_object(self, pk):
        raise NotImplementedError


class ServiceWriteMixin:
    """ModelViewSet writes through services: the serializer validates shape, the service applies rules."""

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        obj = self.service_create(serializer.validated_data)
        return Response(self.get_serializer(obj).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        instance = self.get_object()
        serializer = self.get_serializer(instance, data=request.data, partial=kwargs.pop("partial", False))
        serializer.is_valid(raise_exception=True)
        obj = self.service_update(instance, serializer.validated_data)
        return Response(self.get_serializer(obj).data)

    def destroy(self, request, *args, **kwargs):
        self.service_delete(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def service_create(self, data):
        raise NotImplementedError

    def service_update(self, instance, data):
        raise NotImplementedError

    def service_delete(self, instance):
        raise NotImplementedError
