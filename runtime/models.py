"""What each worker host reported about its sandbox layers."""
from django.db import models


class WorkerHost(models.Model):
    hostname = models.CharField(max_length=200, unique=True)
    # {"layers": {name: {"active": bool, "detail": str}}, "level": str, ...}
    capabilities = models.JSONField(default=dict)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    def __str__(self):
        return self.hostname
