# The audit log and the killswitch moved to core, notifications to accounts: Django's state forgets them
# here; their tables stay, now owned by those apps (core.0001, accounts.0004).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('adminpanel', '0001_initial'),
        ('core', '0001_initial'),
        ('accounts', '0004_notification_from_adminpanel'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='AuditLog'),
                migrations.DeleteModel(name='Killswitch'),
                migrations.DeleteModel(name='Notification'),
            ],
            database_operations=[],
        ),
    ]
