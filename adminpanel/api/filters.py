"""Query filters of the admin lists (django-filter; unknown parameters are refused by autogen_platform.filters)."""
import django_filters

from accounts.models import Customer
from adminpanel import selectors
from agents.models import Agent
from autogen_platform.filters import IdFilter, ordering
from core.models import AuditLog


class CustomerFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Names containing this text.")
    ordering = ordering("name", "created_at")

    class Meta:
        model = Customer
        fields = ["name"]


class AdminAgentFilter(django_filters.FilterSet):
    customer = IdFilter(field_name="customer_id", help_text="Only this customer's agents.")
    status = django_filters.ChoiceFilter(choices=Agent.Status.choices)
    ordering = ordering("name", "created_at", "updated_at")

    class Meta:
        model = Agent
        fields = ["customer", "status"]


class AuditFilter(django_filters.FilterSet):
    """The audit log's filters have their own rules (an action prefix, a bare date as `until`): the selector applies them."""

    actor = django_filters.CharFilter(help_text="Exact actor, e.g. `admin:alice` or a customer username")
    action = django_filters.CharFilter(help_text="Exact action, or a prefix ending in `.` (e.g. `killswitch.`)")
    customer = IdFilter(help_text="Only this customer's rows.")
    since = django_filters.CharFilter(help_text="ISO 8601 date or datetime (inclusive)")
    until = django_filters.CharFilter(help_text="ISO 8601 date or datetime (inclusive)")

    class Meta:
        model = AuditLog
        fields = ["actor", "action", "customer", "since", "until"]

    def filter_queryset(self, queryset):
        data = self.form.cleaned_data
        customer = data.get("customer")
        return selectors.audit_list(actor=data.get("actor") or None, action=data.get("action") or None,
                                    customer=int(customer) if customer is not None else None,
                                    since=data.get("since") or None, until=data.get("until") or None)
