"""The live console at /console/: one page (template + plain JavaScript) that talks to the public API.

Log in, pick an agent or team, submit a task, watch its events arrive over /ws/tasks/{id}/ (reconnecting
with {"after": SEQ} by itself), cancel it, see its result and usage. It holds no server-side state: the
access token lives in the tab's sessionStorage.
"""
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def console(request):
    return render(request, "console/index.html")
