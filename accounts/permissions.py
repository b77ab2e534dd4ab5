from rest_framework import permissions


class IsCustomerMember(permissions.BasePermission):
    """Authenticated user of a customer; viewers may only read."""

    message = "This account does not belong to a customer"

    def has_permission(self, request, view):
        user = request.user
        if not user or not user.is_authenticated:
            return False
        membership = getattr(user, "membership", None)
        if membership is None:
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        if not membership.can_write:
            self.message = "Viewers have read-only access"
            return False
        return True


class IsCustomerOwner(IsCustomerMember):
    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if request.user.membership.role != "owner":
            self.message = "Only a customer's owners may do this"
            return False
        return True
