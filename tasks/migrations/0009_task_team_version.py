# Tasks record the team version they run (as they record agent_version), frozen with the spec.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0008_stop_requested_choices'),
    ]

    operations = [
        migrations.AddField(
            model_name='task',
            name='team_version',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
    ]
