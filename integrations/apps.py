from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (webhooks, schedules)"

    def ready(self):
        # import-time: receivers import models, which Django allows only once the app registry is ready
        from tasks import signals as task_signals

        from . import receivers

        task_signals.tasks_ended.connect(receivers.on_tasks_ended, dispatch_uid="integrations.tasks_ended")
        task_signals.task_event.connect(receivers.on_task_event, dispatch_uid="integrations.task_event")
        task_signals.reaper_sweep.connect(receivers.on_reaper_sweep, dispatch_uid="integrations.reaper_sweep")
        task_signals.reaper_started.connect(receivers.on_reaper_started, dispatch_uid="integrations.reaper_started")

        from . import metrics  # it reads the models: importable only once the registry is ready

        metrics.register()
