from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0002_task_slot_waiting"),
    ]

    operations = [
        migrations.AlterField(
            model_name="taskevent",
            name="type",
            field=models.CharField(
                choices=[
                    ("status", "Status"),
                    ("message", "Message"),
                    ("tool_call", "Tool Call"),
                    ("tool_result", "Tool Result"),
                    ("code_execution", "Code Execution"),
                    ("usage", "Usage"),
                    ("error", "Error"),
                    ("log", "Log"),
                    ("model_waiting", "Model Waiting"),
                ],
                max_length=20,
            ),
        ),
    ]
