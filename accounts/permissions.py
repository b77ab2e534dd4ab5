"""Roles inside a customer (docs/security.md, "Roles"): viewers read; members also run and edit
(create and change models, agents, teams, tasks; stop, start, cancel); owners also delete and
manage the customer's API keys (and its members, through `manage.py create_customer`)."""
from rest_framework import permissions

OWNER = "owner"


class IsCustomerMember(permissions.BasePermission):
    """Authenticated user of a customer: viewers may only read, and only owners delete."""

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
        if request.method == "DELETE" and membership.role != OWNER:
            self.message = "Only a customer's owners may delete"
            return False
        return True


class IsCustomerOwner(IsCustomerMember):
    """Reads as for every member; every write only by an owner (API keys)."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if request.method not in permissions.SAFE_METHODS and request.user.membership.role != OWNER:
            self.message = "Only a customer's owners may do this"
            return False
        return True
