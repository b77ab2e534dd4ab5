from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "teams"

    def ready(self):
        # import-time: receivers import models, which Django allows only once the app registry is ready
        from agents import signals as agent_signals

        from . import receivers

        agent_signals.agent_deleting.connect(receivers.on_agent_deleting, dispatch_uid="teams.agent_deleting")
