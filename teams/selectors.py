"""Reads of teams, scoped to the caller's customer."""
from django.db.models import Prefetch

from accounts.selectors import membership_for_user, scoped_get

from .models import Team, TeamMember, TeamVersion


def _with_members(queryset):
    return queryset.prefetch_related(Prefetch("members", queryset=TeamMember.objects.order_by("position")))


def team_list_for_user(user):
    return _with_members(Team.objects.filter(customer_id=membership_for_user(user).customer_id))


def team_get_for_user(user, pk) -> Team:
    return scoped_get(_with_members(Team.objects.all()), user, pk, what="Team")


def team_version_list(team: Team):
    return TeamVersion.objects.filter(team=team).order_by("-version")
