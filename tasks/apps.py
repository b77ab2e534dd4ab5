from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"

    def ready(self):
        from autogen_platform import tracing

        from . import metrics

        metrics.register()
        # Before any middleware is loaded: with OTEL_EXPORTER_OTLP_ENDPOINT set, every process exports traces.
        tracing.setup()
