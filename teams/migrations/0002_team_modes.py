import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0001_initial'),
        ('teams', '0001_initial'),
    ]

    operations = [
        migrations.RemoveConstraint(model_name='team', name='team_mode_valid'),
        migrations.RemoveConstraint(model_name='team', name='team_selector_has_model'),
        migrations.AddField(
            model_name='team',
            name='orchestrator_model',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name='orchestrator_teams', to='agents.modelconfig'),
        ),
        migrations.AddField(
            model_name='team',
            name='graph',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name='team',
            name='mode',
            field=models.CharField(choices=[('round_robin', 'Round Robin'), ('selector', 'Selector'), ('swarm', 'Swarm'),
                                            ('graph', 'Graph'), ('magentic_one', 'Magentic One')],
                                   default='round_robin', max_length=20),
        ),
        migrations.AddConstraint(
            model_name='team',
            constraint=models.CheckConstraint(
                condition=models.Q(('mode__in', ['round_robin', 'selector', 'swarm', 'graph', 'magentic_one'])),
                name='team_mode_valid'),
        ),
        migrations.AddConstraint(
            model_name='team',
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(('mode', 'selector'), _negated=True), ('selector_model__isnull', False),
                                   _connector='OR'),
                name='team_selector_has_model'),
        ),
        migrations.AddConstraint(
            model_name='team',
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(('mode', 'magentic_one'), _negated=True),
                                   ('orchestrator_model__isnull', False), _connector='OR'),
                name='team_magentic_one_has_model'),
        ),
    ]
