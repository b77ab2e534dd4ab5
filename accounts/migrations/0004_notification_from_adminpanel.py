# Notification moved here from adminpanel (customers read it): a change of Django's state only. The table
# keeps its name (db_table), so no data moves; its content type follows the model.

import django.db.models.deletion
from django.db import migrations, models


def content_type_follows(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="accounts", model="notification").exists():
        ContentType.objects.filter(app_label="adminpanel", model="notification").update(app_label="accounts")


def content_type_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="adminpanel", model="notification").exists():
        ContentType.objects.filter(app_label="accounts", model="notification").update(app_label="adminpanel")


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_customer_stream_notices'),
        ('adminpanel', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Notification',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('message', models.TextField()),
                        ('level', models.CharField(choices=[('info', 'Info'), ('warning', 'Warning'), ('critical', 'Critical')], default='info', max_length=10)),
                        ('created_by', models.CharField(blank=True, default='', max_length=150)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('customer', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.customer')),
                    ],
                    options={
                        'db_table': 'adminpanel_notification',
                        'ordering': ['-created_at', '-id'],
                        'constraints': [models.CheckConstraint(condition=models.Q(('level__in', ['info', 'warning', 'critical'])), name='notification_level_valid')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_follows, content_type_back),
    ]
