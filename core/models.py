"""The records every app writes or reads: the audit log and the killswitch state.

They sit at the bottom of the apps (docs/architecture.md, "Layers") so that any app may write an
audit row or check the killswitch without importing an app above it. Their tables kept the names
they had in adminpanel (db_table): the move was a change of Django's state, no data moved.
"""
from django.conf import settings
from django.db import models


class AuditLog(models.Model):
    actor = models.CharField(max_length=200)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A model name, not an import: core sits below accounts.
    customer = models.ForeignKey("accounts.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=200, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "adminpanel_auditlog"
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


class Killswitch(models.Model):
    """One row per scope: customer null is the global switch. The database is the record; Redis only carries the news."""

    # "global" or "customer:<id>": unique, so there is one row per scope (nulls would not be).
    scope = models.CharField(max_length=50, unique=True)
    customer = models.OneToOneField("accounts.Customer", null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="+")
    engaged = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    changed_by = models.CharField(max_length=150, blank=True, default="")
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "adminpanel_killswitch"
        verbose_name_plural = "killswitches"

    def __str__(self):
        return f"killswitch {self.scope}: {'engaged' if self.engaged else 'released'}"
