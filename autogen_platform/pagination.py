"""The one pagination of every list: `page` and `page_size` (default PAGE_SIZE, at most MAX_PAGE_SIZE)."""
from django.conf import settings
from rest_framework.pagination import PageNumberPagination

from .errors import ValidationFailed


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:
        return settings.MAX_PAGE_SIZE

    def get_page_size(self, request):
        """A missing or empty page_size is the default; above MAX_PAGE_SIZE it is cut; anything else is a 400."""
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return min(self.page_size, self.max_page_size)
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise ValidationFailed(
                f"page_size must be a positive integer (at most {self.max_page_size})",
                details={"page_size": [f"A positive integer, at most {self.max_page_size}"]},
            )
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = (f"Results per page (default {self.page_size}); larger values are cut "
                                            f"to {self.max_page_size}.")
            elif parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters
