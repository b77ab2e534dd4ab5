from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tasks", "0002_task_slot_waiting"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="traceparent",
            field=models.CharField(blank=True, default="", max_length=55),
        ),
    ]
