# The audit log and the killswitch moved here from adminpanel: a change of Django's state only. The
# tables keep their names (db_table), so no data moves; the content types follow the models, so
# permissions and admin log entries that name them stay attached.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("auditlog", "killswitch")


def content_types_follow(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label="core", model=model).exists():
            ContentType.objects.filter(app_label="adminpanel", model=model).update(app_label="core")


def content_types_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label="adminpanel", model=model).exists():
            ContentType.objects.filter(app_label="core", model=model).update(app_label="adminpanel")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0001_initial'),
        ('adminpanel', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditLog',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('actor', models.CharField(max_length=200)),
                        ('action', models.CharField(db_index=True, max_length=100)),
                        ('target', models.CharField(blank=True, default='', max_length=200)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('details', models.JSONField(blank=True, default=dict)),
                        ('actor_user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('customer', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='accounts.customer')),
                    ],
                    options={
                        'db_table': 'adminpanel_auditlog',
                        'ordering': ['-at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='Killswitch',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('scope', models.CharField(max_length=50, unique=True)),
                        ('engaged', models.BooleanField(default=False)),
                        ('reason', models.TextField(blank=True, default='')),
                        ('changed_by', models.CharField(blank=True, default='', max_length=150)),
                        ('changed_at', models.DateTimeField(auto_now=True)),
                        ('customer', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.customer')),
                    ],
                    options={
                        'db_table': 'adminpanel_killswitch',
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_follow, content_types_back),
    ]
