# Task.cancel_requested held stop reasons that end nothing (a restart): renamed to what it holds, the reasons
# listed as choices (runtime.outcomes.StopReason). A column rename; no data changes.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tasks", "0006_alter_taskevent_type"),
    ]

    operations = [
        migrations.RenameField(model_name="task", old_name="cancel_requested", new_name="stop_requested"),
        migrations.AlterField(
            model_name="task",
            name="stop_requested",
            field=models.CharField(
                blank=True,
                choices=[("cancelled", "Cancelled"), ("killswitch", "Killswitch"), ("stopped", "Stopped"),
                         ("restart", "Restart"), ("shutdown", "Shutdown"), ("interrupt", "Interrupt"),
                         ("rollback", "Rollback")],
                default="",
                max_length=20,
            ),
        ),
    ]
