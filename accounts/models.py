"""Tenants (customers) with their quotas, the users' memberships in them, and API keys."""
from django.conf import settings
from django.db import models
from django.db.models import Q


def default_quota(name):
    return settings.DEFAULT_CUSTOMER_QUOTAS[name]


class Customer(models.Model):
    QUOTA_FIELDS = (
        "max_agents",
        "max_concurrent_tasks",
        "max_tasks_per_day",
        "monthly_token_budget",
        "max_memory_mb",
        "max_cpu_seconds",
        "max_timeout_seconds",
    )

    name = models.CharField(max_length=100, unique=True)
    max_agents = models.PositiveIntegerField(default=50)
    max_concurrent_tasks = models.PositiveIntegerField(default=5)
    max_tasks_per_day = models.PositiveIntegerField(default=1000)
    monthly_token_budget = models.PositiveBigIntegerField(default=10_000_000)
    max_memory_mb = models.PositiveIntegerField(default=2048)
    max_cpu_seconds = models.PositiveIntegerField(default=600)
    max_timeout_seconds = models.PositiveIntegerField(default=3600)
    # The hosts this customer's HTTP tools may call (set by the platform's admins: the calls leave from the
    # platform's network): "api.example.com", "*.example.com" (its subdomains), or an IP address. Empty: none.
    http_tool_hosts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by customer_delete: access ended then; the rows are purged CUSTOMER_RETENTION_DAYS later.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="customer_name_not_empty")]

    def __str__(self):
        return self.name

    @property
    def quotas(self) -> dict:
        return {name: getattr(self, name) for name in self.QUOTA_FIELDS}


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"
        VIEWER = "viewer"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(role__in=["owner", "member", "viewer"]), name="membership_role_valid")
        ]

    def __str__(self):
        return f"{self.user} @ {self.customer} ({self.role})"

    @property
    def can_write(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.MEMBER)


class ApiKey(models.Model):
    """A customer API key: only its prefix and SHA-256 hash are stored; the key is shown once."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_keys")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class CustomerStream(models.Model):
    """A customer's `/ws/events/` stream: the seq of its last notice. Its row lock hands out seqs one at a
    time, in commit order, so a client resuming after SEQ never misses a notice committed later with a
    smaller one."""

    customer = models.OneToOneField(Customer, primary_key=True, on_delete=models.CASCADE, related_name="stream")
    last_seq = models.PositiveBigIntegerField(default=0)
    # Notices up to this seq were pruned (CUSTOMER_STREAM_KEEP): a client resuming from before it missed some.
    pruned_through = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"stream of {self.customer_id} at {self.last_seq}"


class CustomerNotice(models.Model):
    """One frame of a customer's events stream (a task's status change, a broadcast, a killswitch notice),
    kept so that a client that reconnects gets what it missed. The newest CUSTOMER_STREAM_KEEP are kept."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notices")
    seq = models.PositiveBigIntegerField()
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer", "seq"]
        constraints = [models.UniqueConstraint(fields=["customer", "seq"], name="customer_notice_seq_unique")]

    def __str__(self):
        return f"{self.customer} notice #{self.seq}: {(self.payload or {}).get('type', '')}"

    def as_frame(self) -> dict:
        return {**self.payload, "seq": self.seq}


class Notification(models.Model):
    """A notice kept for a customer (or, customer null, a broadcast to every customer), listed by
    /api/notifications/. Written by the admin plane (broadcasts, killswitch); moved here from adminpanel
    with its table (db_table), since customers read it."""

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
        db_table = "adminpanel_notification"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(level__in=["info", "warning", "critical"]), name="notification_level_valid")
        ]

    def __str__(self):
        scope = self.customer or "everyone"
        return f"{self.level} to {scope}: {self.message[:60]}"


class CustomerUsage(models.Model):
    """What a customer used of its quotas, per day (UTC) of the tasks' creation: tasks created, the tokens
    those tasks used (kept equal to the sum of their tokens_used by every write of it), and how many of them
    ended in each final status. The daily task quota reads one row and the monthly token budget at most 31,
    however many tasks the customer ever had; the admin statistics sum the final statuses here instead of
    counting the whole tasks table (accounts.services.customer_usage_add keeps them all)."""

    # the counters, in the order customer_usage_add takes them; the last four are Task.Status values
    COUNTERS = ("tasks", "tokens", "succeeded", "failed", "cancelled", "timed_out")
    ENDED = COUNTERS[2:]

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    tasks = models.IntegerField(default=0)
    tokens = models.BigIntegerField(default=0)
    succeeded = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    timed_out = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "day"], name="customer_usage_per_day")]

    def __str__(self):
        return f"{self.customer_id} on {self.day}: {self.tasks} tasks, {self.tokens} tokens"
