from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_customer_deleted_at'),
    ]

    operations = [
        migrations.CreateModel(
            name='CustomerStream',
            fields=[
                ('customer', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='stream', serialize=False, to='accounts.customer')),
                ('last_seq', models.PositiveBigIntegerField(default=0)),
                ('pruned_through', models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name='CustomerNotice',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('seq', models.PositiveBigIntegerField()),
                ('payload', models.JSONField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('customer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notices', to='accounts.customer')),
            ],
            options={
                'ordering': ['customer', 'seq'],
                'constraints': [models.UniqueConstraint(fields=('customer', 'seq'), name='customer_notice_seq_unique')],
            },
        ),
    ]
