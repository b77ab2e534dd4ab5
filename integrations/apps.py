from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (webhooks, schedules)"

    def ready(self):
        from . import metrics

        metrics.register()
