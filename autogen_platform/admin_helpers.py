"""Django admin pieces every app uses (the bottom layer: no app imports needed)."""


class ViewOnlyAdminMixin:
    """Inspect in the admin; change through the API or an action that calls a service."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
