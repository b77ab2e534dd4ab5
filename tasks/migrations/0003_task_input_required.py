from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0002_task_slot_waiting'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='task',
            name='task_status_valid',
        ),
        migrations.AlterField(
            model_name='task',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('input_required', 'Input Required'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled'), ('timed_out', 'Timed Out')], db_index=True, default='queued', max_length=20),
        ),
        migrations.AddField(
            model_name='task',
            name='suspension',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='task',
            name='input_deadline',
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AlterField(
            model_name='taskevent',
            name='type',
            field=models.CharField(choices=[('status', 'Status'), ('message', 'Message'), ('tool_call', 'Tool Call'), ('tool_result', 'Tool Result'), ('code_execution', 'Code Execution'), ('usage', 'Usage'), ('error', 'Error'), ('log', 'Log'), ('input_request', 'Input Request'), ('input_response', 'Input Response')], max_length=20),
        ),
        migrations.AddConstraint(
            model_name='task',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'input_required', 'succeeded', 'failed', 'cancelled', 'timed_out'])), name='task_status_valid'),
        ),
    ]
