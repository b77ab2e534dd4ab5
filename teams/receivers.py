"""teams' answers to what agents asks (agents.signals), connected in TeamsConfig.ready(): agents sits below
teams and may not import it."""
from autogen_platform.errors import Conflict

from .models import TeamMember


def on_agent_deleting(sender, *, agent, **kwargs):
    teams = sorted(TeamMember.objects.filter(agent=agent).values_list("team__name", flat=True))
    if teams:
        raise Conflict(f"Agent {agent.name!r} is a member of teams: {', '.join(teams)}", details={"teams": teams})
