"""The audit log, notifications (broadcasts) and the killswitch record."""
from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Customer


class AuditLog(models.Model):
    actor = models.CharField(max_length=200)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=200, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"


class Notification(models.Model):
    class Level(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    # Null customer: a broadcast to every customer.
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    message = models.TextField()
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(level__in=["info", "warning", "critical"]), name="notification_level_valid")
        ]

    def __str__(self):
        scope = self.customer or "everyone"
        return f"{self.level} to {scope}: {self.message[:60]}"


class Killswitch(models.Model):
    """One row per scope: customer null is the global switch. The database is the record; Redis only carries the news."""

    # "global" or "customer:<id>": unique, so there is one row per scope (nulls would not be).
    scope = models.CharField(max_length=50, unique=True)
    customer = models.OneToOneField(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    engaged = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    changed_by = models.CharField(max_length=150, blank=True, default="")
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"killswitch {self.scope}: {'engaged' if self.engaged else 'released'}"
