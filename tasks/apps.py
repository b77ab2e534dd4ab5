from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"

    def ready(self):
        # import-time: these import models, which Django allows only once the app registry is ready
        from autogen_platform import tracing

        from . import metrics

        metrics.register()
        # Before any middleware is loaded: with OTEL_EXPORTER_OTLP_ENDPOINT set, every process exports traces.
        tracing.setup()

        # import-time: as above (receivers import tasks.services and the models)
        from accounts import signals as account_signals
        from agents import signals as agent_signals
        from teams import signals as team_signals

        from . import receivers

        account_signals.customer_deleted.connect(receivers.on_customer_deleted, dispatch_uid="tasks.customer_deleted")
        agent_signals.agent_tasks_stop.connect(receivers.on_agent_tasks_stop, dispatch_uid="tasks.agent_tasks_stop")
        agent_signals.agent_deleting.connect(receivers.on_agent_deleting, dispatch_uid="tasks.agent_deleting")
        agent_signals.agent_running_tasks.connect(receivers.on_agent_running_tasks,
                                                  dispatch_uid="tasks.agent_running_tasks")
        team_signals.team_deleting.connect(receivers.on_team_deleting, dispatch_uid="tasks.team_deleting")
