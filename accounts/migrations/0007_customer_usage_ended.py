from datetime import timezone

from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import TruncDate

ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def count_existing_ends(apps, schema_editor):
    """The new counters start equal to the finished tasks, by creation day and final status (one pass over the
    tasks table, once); every end and deletion keeps them so from then on (accounts.services.customer_usage_add)."""
    Task = apps.get_model("tasks", "Task")
    CustomerUsage = apps.get_model("accounts", "CustomerUsage")
    rows = (Task.objects.filter(status__in=ENDED).annotate(day=TruncDate("created_at", tzinfo=timezone.utc))
            .values("customer_id", "day", "status").annotate(n=Count("pk")).order_by())
    counts: dict = {}
    for row in rows:
        counts.setdefault((row["customer_id"], row["day"]), {})[row["status"]] = row["n"]
    # every task has its (customer, day) row since 0004 (made with the task); one is made where it is missing
    existing = {(u.customer_id, u.day): u for u in CustomerUsage.objects.all()}
    changed, missing = [], []
    for (customer_id, day), ended in counts.items():
        usage = existing.get((customer_id, day))
        if usage is None:
            usage = CustomerUsage(customer_id=customer_id, day=day)
            missing.append(usage)
        else:
            changed.append(usage)
        for status, n in ended.items():
            setattr(usage, status, n)
    CustomerUsage.objects.bulk_update(changed, list(ENDED), batch_size=1000)
    CustomerUsage.objects.bulk_create(missing, batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0006_customer_http_tool_hosts'),
        ('tasks', '0009_task_team_version'),
    ]

    operations = [
        migrations.AddField(model_name='customerusage', name='succeeded', field=models.IntegerField(default=0)),
        migrations.AddField(model_name='customerusage', name='failed', field=models.IntegerField(default=0)),
        migrations.AddField(model_name='customerusage', name='cancelled', field=models.IntegerField(default=0)),
        migrations.AddField(model_name='customerusage', name='timed_out', field=models.IntegerField(default=0)),
        migrations.RunPython(count_existing_ends, migrations.RunPython.noop),
    ]
