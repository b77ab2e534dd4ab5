from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='agent',
            name='human_input',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='agent',
            name='approval',
            field=models.JSONField(blank=True, default=list),
        ),
    ]
