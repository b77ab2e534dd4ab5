"""The studio's pages: server-rendered views over the existing selectors (reads, scoped to the user's customer)
and services (writes, which keep every rule and write the audit rows). Viewers read; members and owners write.

Sign-in is a Django session (the same authenticate() as every other password form: lockout and audit apply).
The run page follows a running task over /ws/tasks/{id}/ with a short-lived access token from `token/`."""
import difflib
import json
from functools import wraps

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import customer_for_user
from agents import selectors as agent_selectors
from agents import services as agent_services
from autogen_platform.errors import ApplicationError, NotFound
from autogen_platform.markdown import render_markdown
from tasks import selectors as task_selectors
from tasks import services as task_services
from tasks.transcript import ERROR_EXPLANATIONS, build_transcript, shown_seqs
from teams import selectors as team_selectors
from teams import services as team_services

from . import forms, selectors

RUNS_PER_PAGE = 25


# -- access -------------------------------------------------------------------------------------------------


def _membership(request):
    user = request.user
    return getattr(user, "membership", None) if user.is_authenticated else None


def member_required(view):
    """A signed-in user of a customer; anyone else goes to the sign-in page."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if _membership(request) is None:
            return redirect(f"{reverse('studio:login')}?next={request.get_full_path()}")
        try:
            return view(request, *args, **kwargs)
        except NotFound:
            return render(request, "studio/error.html", {"title": "Not found",
                                                         "message": "There is nothing of yours here."}, status=404)

    return wrapped


def writer_required(view):
    """Members and owners write; a viewer gets 403 (the pages show viewers no write controls at all)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        membership = _membership(request)
        if membership is not None and not membership.can_write:
            return render(request, "studio/error.html", {
                "title": "Read-only access", "message": "Viewers can read everything here but cannot change it."},
                status=403)
        return view(request, *args, **kwargs)

    return member_required(wrapped)


def _context(request, section, **extra):
    membership = _membership(request)
    return {"section": section, "membership": membership, "can_write": membership.can_write, **extra}


# -- sign-in ---------------------------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    template_name = "studio/login.html"
    authentication_form = forms.StudioLoginForm
    redirect_authenticated_user = False

    def get_default_redirect_url(self):
        return reverse("studio:home")


@require_POST
def logout_view(request):
    from django.contrib.auth import logout

    logout(request)
    return redirect("studio:login")


@never_cache
@require_GET
@member_required
def ws_token(request):
    """A customer access token for this session's user, for the run page's WebSocket (never stored by the page)."""
    from rest_framework_simplejwt.tokens import AccessToken

    access = AccessToken.for_user(request.user)
    access["scope"] = "customer"
    return JsonResponse({"access": str(access)})


def console_redirect(request):
    """The old live console lives on in the studio. Browsers keep a URL's fragment across a redirect, so
    /console/#task=ID reaches the home page as /studio/#task=ID, which opens that run (console_links.js)."""
    return redirect("studio:home", permanent=False)


# -- home and runs ------------------------------------------------------------------------------------------


def _targets(user):
    return agent_selectors.agent_list_for_user(user), team_selectors.team_list_for_user(user)


@member_required
def home(request):
    agents, teams = _targets(request.user)
    form = forms.RunForm(agents=agents, teams=teams, initial={"target": request.GET.get("target", "")})
    recent = selectors.run_list_for_user(request.user)[:10]
    return render(request, "studio/home.html", _context(request, "home", form=form, recent=recent,
                                                        has_targets=agents.exists() or teams.exists()))


@writer_required
@require_POST
def run_create(request):
    agents, teams = _targets(request.user)
    form = forms.RunForm(request.POST, agents=agents, teams=teams)
    if form.is_valid():
        kind, _, pk = form.cleaned_data["target"].partition(":")
        try:
            target = (agent_selectors.agent_get_for_user(request.user, pk) if kind == "agent"
                      else team_selectors.team_get_for_user(request.user, pk))
            if form.cleaned_data.get("each_line"):
                # one run per line, all created together or none (POST /api/tasks/batch/'s service)
                task_services.task_create_many(
                    actor=request.user, customer=customer_for_user(request.user), request=request,
                    items=[{kind: target, "input": line} for line in form.cleaned_data["lines"]])
                return redirect(f"{reverse('studio:runs')}?{kind}={target.pk}")
            task, _ = task_services.task_create(
                actor=request.user, customer=customer_for_user(request.user), input=form.cleaned_data["input"],
                request=request, **{kind: target})
            return redirect("studio:run", pk=task.pk)
        except ApplicationError as exc:
            if "task" in exc.details:  # an item of the batch: say which line of the box it was
                index = exc.details.pop("task")
                line = form.cleaned_data["line_numbers"][index]
                exc.message = exc.message.replace(f"Task {index} of the batch:", f"Line {line}:", 1)
            forms.apply_service_error(form, exc)
    recent = selectors.run_list_for_user(request.user)[:10]
    return render(request, "studio/home.html", _context(request, "home", form=form, recent=recent, has_targets=True),
                  status=400)


@member_required
def runs(request):
    agents, teams = _targets(request.user)
    filters = forms.RunFilterForm(request.GET or None, agents=agents, teams=teams)
    values = filters.cleaned_data if filters.is_valid() else {}
    chosen = {k: v for k, v in values.items() if v not in (None, "")}
    queryset = selectors.run_list_for_user(request.user, **chosen)
    page = Paginator(queryset, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    costs = selectors.task_costs(page.object_list)
    for run in page.object_list:
        run.cost = costs.get(run.pk)
    query = request.GET.copy()
    query.pop("page", None)
    context = _context(request, "runs", filters=filters, page=page, query=query.urlencode(), filtered=bool(chosen))
    if request.headers.get("HX-Request"):
        return render(request, "studio/partials/runs_table.html", context)
    return render(request, "studio/runs.html", context)


def _error_text(exc: ApplicationError) -> str:
    """A service's refusal for people: its field messages when it has them (validation), else its message."""
    details = exc.details if isinstance(exc.details, dict) else {}
    messages = [m for value in details.values() for m in (value if isinstance(value, list) else [value])
                if isinstance(m, str)]
    return " ".join(messages) or exc.message


def _run_models(request, task) -> list:
    """The customer's model configurations the run's agents (and team) used, still there, by name."""
    spec = task.spec if isinstance(task.spec, dict) else {}
    ids = {a.get("model") for a in spec.get("agents") or [] if isinstance(a, dict)}
    ids |= {(spec.get("team") or {}).get(k) for k in ("selector_model", "orchestrator_model")}
    return list(agent_selectors.model_config_list_for_user(request.user).filter(pk__in=ids - {None}).order_by("name"))


def _run_context(request, task):
    events = list(task_selectors.task_events_page(task, after=0, limit=task_selectors.EVENTS_MAX_LIMIT))
    turns = build_transcript(events, started_at=task.started_at or task.created_at)
    error = task.error or None
    return {
        "task": task,
        "target_name": task.agent.name if task.agent else task.team.name if task.team else "(deleted)",
        "continue_form": forms.ContinueForm(),
        "turns": turns,
        # The run's input is the first message of its transcript; shown from the task until that event exists.
        "input_shown": any(t.kind == "message" and t.source == "user" for t in turns),
        "last_seq": events[-1].seq if events else 0,
        "shown": shown_seqs(turns),
        "error": error,
        "error_explanation": ERROR_EXPLANATIONS.get((error or {}).get("code", "")),
        # a model's failure: the run's model configurations, where the user can fix and test them
        "error_models": _run_models(request, task) if (error or {}).get("code") == "model_error" else [],
        "stop_reason": (task.result or {}).get("stop_reason") if isinstance(task.result, dict) else None,
        "result_text": render_markdown(task.result["text"]) if isinstance(task.result, dict)
        and isinstance(task.result.get("text"), str) and task.result["text"] else None,
        "thread_runs": selectors.thread_runs(task),
        "member_versions": task_services.task_member_versions(task),
        "cost": selectors.task_cost(task) if task.is_finished else None,
        "usage_rows": [(k.replace("_", " "), k, v) for k, v in (task.usage or {}).items()],
        "input_request": (asked := task_services.task_input_request(task)),
        "input_expires": parse_datetime(asked["expires_at"]) if asked and isinstance(asked.get("expires_at"), str)
        else None,
        "input_request_seq": next((e.seq for e in reversed(events) if e.type == "input_request"), 0),
        "answer_max": settings.MAX_TASK_INPUT_CHARS,
    }


@member_required
def run_detail(request, pk):
    task = task_selectors.task_get_for_user(user=request.user, pk=pk)
    return render(request, "studio/run.html", _context(request, "runs", **_run_context(request, task)))


@member_required
@require_GET
def run_live(request, pk):
    """The live part of the run page (status, transcript, outcome), fetched again as events arrive."""
    task = task_selectors.task_get_for_user(user=request.user, pk=pk)
    return render(request, "studio/partials/run_live.html", _context(request, "runs", **_run_context(request, task)))


@writer_required
@require_POST
def run_cancel(request, pk):
    task = task_selectors.task_get_for_user(user=request.user, pk=pk)
    try:
        task_services.task_cancel(actor=request.user, task=task, request=request)
    except ApplicationError:
        pass  # it finished meanwhile: the page shows how
    return redirect("studio:run", pk=task.pk)


@writer_required
@require_POST
def run_input(request, pk):
    """The person's answer to a run waiting in input_required: `text` for a question, `approve` (true/false)
    for an approval. The same service as POST /api/tasks/{id}/input/; the run resumes on a worker and the
    page follows it live. From htmx the live part comes back (a refusal shown in it); else the run page."""
    task = task_selectors.task_get_for_user(user=request.user, pk=pk)
    approve = {"true": True, "false": False}.get(request.POST.get("approve", ""))
    answer_error = None
    try:
        task = task_services.task_answer(actor=request.user, task=task, text=request.POST.get("text"),
                                         approve=approve, request=request)
    except ApplicationError as exc:
        answer_error, answer_status = _error_text(exc), exc.status
    if request.headers.get("HX-Request"):
        # htmx swaps only 2xx answers: a refusal is shown in the live part it swaps in
        context = _context(request, "runs", **_run_context(request, task), answer_error=answer_error,
                           answered=answer_error is None)
        return render(request, "studio/partials/run_live.html", context)
    if answer_error is None:
        return redirect("studio:run", pk=task.pk)
    context = _context(request, "runs", **_run_context(request, task), answer_error=answer_error)
    return render(request, "studio/run.html", context, status=answer_status)


@writer_required
@require_POST
def run_continue(request, pk):
    """A new run on the same thread: the agent or team goes on from the conversation so far."""
    task = task_selectors.task_get_for_user(user=request.user, pk=pk)
    form = forms.ContinueForm(request.POST)
    if form.is_valid():
        try:
            new, _ = task_services.task_create(
                actor=request.user, customer=customer_for_user(request.user), input=form.cleaned_data["input"],
                agent=task.agent, team=task.team, thread=task.thread, request=request)
            return redirect("studio:run", pk=new.pk)
        except ApplicationError as exc:
            forms.apply_service_error(form, exc)
    context = _context(request, "runs", **_run_context(request, task))
    context["continue_form"] = form
    return render(request, "studio/run.html", context, status=400)


# -- model configurations ---------------------------------------------------------------------------------------


@member_required
def models_list(request):
    models = agent_selectors.model_config_list_for_user(request.user)
    return render(request, "studio/models.html", _context(request, "models", models=models))


def _save(request, form, page: str, service_data, *, create, update):
    """A valid form goes to its service (update when editing, else create for the user's customer) and the
    browser to the saved object's page; a service's refusal lands on the form's fields. None: show the form."""
    if not form.is_valid():
        return None
    try:
        data = service_data()
        if update:
            saved = update(data)
        else:
            saved = create(actor=request.user, customer=customer_for_user(request.user), request=request, **data)
    except ApplicationError as exc:
        forms.apply_service_error(form, exc)
        return None
    return redirect(f"{reverse(page, args=[saved.pk])}?saved=1")


def _model_form_page(request, model=None):
    editing = model is not None
    membership = _membership(request)
    if request.method == "POST":
        if not membership.can_write:
            return writer_required(lambda r: None)(request)
        form = forms.ModelConfigForm(request.POST)
        saved = _save(request, form, "studio:model", lambda: form.service_data(editing=editing),
                      create=agent_services.model_config_create,
                      update=editing and (lambda data: agent_services.model_config_update(
                          actor=request.user, model_config=model, data=data, request=request)))
        if saved:
            return saved
    else:
        form = forms.ModelConfigForm(initial=forms.ModelConfigForm.initial_for(model) if editing else {
            "provider": "openai"})
    status = 400 if request.method == "POST" else 200
    return render(request, "studio/model_form.html",
                  _context(request, "models", form=form, model=model, saved=request.GET.get("saved")), status=status)


@member_required
def model_new(request):
    return _model_form_page(request)


@member_required
def model_edit(request, pk):
    return _model_form_page(request, agent_selectors.model_config_get_for_user(request.user, pk))


# -- agents -------------------------------------------------------------------------------------------------


@member_required
def agents_list(request):
    agents = agent_selectors.agent_list_for_user(request.user).select_related("model")
    return render(request, "studio/agents.html", _context(request, "agents", agents=agents))


def _chosen(asked, choices: list):
    """The choice a link asked for (?model=ID), else the newest (highest id): what a user just created."""
    return next((c for c in choices if str(c) == asked), max(choices, default=None))


def _agent_form_page(request, agent=None):
    models = agent_selectors.model_config_list_for_user(request.user)
    custom_tools = agent_selectors.tool_list_for_user(request.user)
    editing = agent is not None
    if request.method == "POST":
        if not _membership(request).can_write:
            return writer_required(lambda r: None)(request)
        form = forms.AgentForm(request.POST, models=models, custom_tools=custom_tools)
        saved = _save(request, form, "studio:agent", form.service_data, create=agent_services.agent_create,
                      update=editing and (lambda data: agent_services.agent_update(
                          actor=request.user, agent=agent, data=data, request=request)))
        if saved:
            return saved
    else:
        form = forms.AgentForm(initial=forms.AgentForm.initial_for(agent) if editing else {
            "model": _chosen(request.GET.get("model"), [m.pk for m in models])}, models=models,
            custom_tools=custom_tools)
    versions = list(agent_selectors.agent_version_list(agent)) if editing else []
    context = _context(request, "agents", form=form, agent=agent, versions=versions,
                       saved=request.GET.get("saved"), no_models=not models.exists())
    return render(request, "studio/agent_form.html", context, status=400 if request.method == "POST" else 200)


@member_required
def agent_new(request):
    return _agent_form_page(request)


@member_required
def agent_edit(request, pk):
    return _agent_form_page(request, agent_selectors.agent_get_for_user(request.user, pk))


def _snapshot_lines(snapshot: dict, model_names: dict) -> list[str]:
    snapshot = dict(snapshot or {})
    model = snapshot.get("model")
    lines = [f"model: {model_names.get(model, model)}",
             f"tools: {', '.join(snapshot.get('tools') or []) or '(none)'}",
             f"code_execution: {'yes' if snapshot.get('code_execution') else 'no'}",
             f"limits: {json.dumps(snapshot.get('limits') or {}, sort_keys=True)}",
             "system_message:"]
    return lines + (snapshot.get("system_message") or "").splitlines()


def _version_diff(request, versions: dict, current: int, lines) -> tuple:
    """Versions `a` and `b` of the query (defaults: the previous and the current one) and their unified diff
    as (kind, line) rows; `lines` turns a snapshot into the lines compared."""

    def pick(name, default):
        try:
            number = int(request.GET.get(name, default))
        except ValueError:
            number = default
        return versions.get(number) or versions.get(default)

    new = pick("b", current)
    old = pick("a", max(new.version - 1, 1))
    diff = list(difflib.unified_diff(lines(old.snapshot), lines(new.snapshot),
                                     fromfile=f"v{old.version}", tofile=f"v{new.version}", lineterm="", n=3))
    rows = [("add" if line.startswith("+") and not line.startswith("+++") else
             "del" if line.startswith("-") and not line.startswith("---") else
             "hunk" if line.startswith("@@") else "same", line) for line in diff]
    return old, new, rows


@member_required
def agent_diff(request, pk):
    """Two versions of an agent side by side as a unified diff (defaults: the previous and the current one)."""
    agent = agent_selectors.agent_get_for_user(request.user, pk)
    versions = {v.version: v for v in agent_selectors.agent_version_list(agent)}
    names = dict(agent_selectors.model_config_list_for_user(request.user).values_list("pk", "name"))
    old, new, rows = _version_diff(request, versions, agent.version, lambda s: _snapshot_lines(s, names))
    return render(request, "studio/version_diff.html", _context(
        request, "agents", kind="Agent", obj=agent, page="studio:agent", old=old, new=new, rows=rows,
        versions=sorted(versions)))


def _rollback(request, kind: str, obj, service, page: str):
    try:
        version = int(request.POST.get("version", ""))
        obj = service(actor=request.user, version=version, request=request, **{kind: obj})
    except (ValueError, ApplicationError) as exc:
        message = _error_text(exc) if isinstance(exc, ApplicationError) else "Choose a version"
        return render(request, "studio/error.html", _context(request, f"{kind}s", title="Rollback refused",
                                                             message=message), status=getattr(exc, "status", 400))
    return redirect(f"{reverse(page, args=[obj.pk])}?saved=rollback")


@writer_required
@require_POST
def agent_rollback(request, pk):
    agent = agent_selectors.agent_get_for_user(request.user, pk)
    return _rollback(request, "agent", agent, agent_services.agent_rollback, "studio:agent")


# -- teams -------------------------------------------------------------------------------------------------


@member_required
def teams_list(request):
    teams = team_selectors.team_list_for_user(request.user).prefetch_related("members__agent")
    return render(request, "studio/teams.html", _context(request, "teams", teams=teams))


def _team_form_page(request, team=None):
    agents = agent_selectors.agent_list_for_user(request.user)
    models = agent_selectors.model_config_list_for_user(request.user)
    editing = team is not None
    if request.method == "POST":
        if not _membership(request).can_write:
            return writer_required(lambda r: None)(request)
        form = forms.TeamForm(request.POST, agents=agents, models=models,
                              stored_graph=team.graph if editing else None)
        saved = _save(request, form, "studio:team", form.service_data, create=team_services.team_create,
                      update=editing and (lambda data: team_services.team_update(
                          actor=request.user, team=team, data=data, request=request)))
        if saved:
            return saved
    else:
        form = forms.TeamForm(initial=forms.TeamForm.initial_for(team) if editing else {
            "mode": "round_robin", "max_messages": 10, "text_mention": "TERMINATE"}, agents=agents, models=models)
    versions = list(team_selectors.team_version_list(team)) if editing else []
    return render(request, "studio/team_form.html", _context(
        request, "teams", form=form, team=team, versions=versions, saved=request.GET.get("saved"),
        no_agents=not agents.exists()), status=400 if request.method == "POST" else 200)


@member_required
def team_new(request):
    return _team_form_page(request)


@member_required
def team_edit(request, pk):
    return _team_form_page(request, team_selectors.team_get_for_user(request.user, pk))


def _team_snapshot_lines(snapshot: dict, agent_names: dict, model_names: dict) -> list[str]:
    snapshot = dict(snapshot or {})
    members = [agent_names.get(pk, f"(deleted agent {pk})") for pk in snapshot.get("members") or []]
    lines = [f"mode: {snapshot.get('mode', '')}",
             "members: " + (", ".join(members) or "(none)")]
    for field in ("selector_model", "orchestrator_model"):
        if snapshot.get(field) is not None:
            lines.append(f"{field}: {model_names.get(snapshot[field], snapshot[field])}")
    lines.append(f"termination: {json.dumps(snapshot.get('termination') or {}, sort_keys=True)}")
    for edge in (snapshot.get("graph") or {}).get("edges", []):
        condition = f" when {edge['condition']!r}" if edge.get("condition") else ""
        lines.append(f"edge: {agent_names.get(edge.get('source'), edge.get('source'))} -> "
                     f"{agent_names.get(edge.get('target'), edge.get('target'))}{condition}")
    return lines


@member_required
def team_diff(request, pk):
    """Two versions of a team as a unified diff: members by name, mode, models, termination, graph edges."""
    team = team_selectors.team_get_for_user(request.user, pk)
    versions = {v.version: v for v in team_selectors.team_version_list(team)}
    if not versions:
        raise NotFound()
    agents = dict(agent_selectors.agent_list_for_user(request.user).values_list("pk", "name"))
    models = dict(agent_selectors.model_config_list_for_user(request.user).values_list("pk", "name"))
    old, new, rows = _version_diff(request, versions, team.version,
                                   lambda s: _team_snapshot_lines(s, agents, models))
    return render(request, "studio/version_diff.html", _context(
        request, "teams", kind="Team", obj=team, page="studio:team", old=old, new=new, rows=rows,
        versions=sorted(versions)))


@writer_required
@require_POST
def team_rollback(request, pk):
    team = team_selectors.team_get_for_user(request.user, pk)
    return _rollback(request, "team", team, team_services.team_rollback, "studio:team")


# -- usage ------------------------------------------------------------------------------------------------------

USAGE_PERIODS = (7, 30, 90)


@member_required
def usage(request):
    try:
        days = int(request.GET.get("days", 30))
    except ValueError:
        days = 30
    days = days if days in USAGE_PERIODS else 30
    data = selectors.usage_for_user(request.user, days=days)
    return render(request, "studio/usage.html", _context(
        request, "usage", usage=data, periods=USAGE_PERIODS, charts=_charts(data)))


def _bars(rows, value=lambda r: r["tokens"]):
    """Rows -> [(label, row, width percent)] for a horizontal bar chart."""
    top = max([value(r) for _, r in rows] + [0]) or 1
    return [(label, row, round(100 * value(row) / top, 1)) for label, row in rows]


def _charts(data) -> dict:
    days = data["per_day"]
    top = max([r["tokens"] for _, r in days] + [0]) or 1
    width = 24 if len(days) <= 31 else 8
    columns = []
    for i, (day, row) in enumerate(days):
        prompt_h = round(160 * row["prompt_tokens"] / top, 1)
        completion_h = round(160 * row["completion_tokens"] / top, 1)
        columns.append({"x": i * (width + 4), "w": width, "day": day, "row": row, "prompt_h": prompt_h,
                        "completion_h": completion_h, "prompt_y": 170 - prompt_h,
                        "completion_y": 170 - prompt_h - completion_h})
    return {"day_columns": columns, "day_width": len(days) * (width + 4), "top": top,
            "agents": _bars(data["per_agent"]), "models": _bars(data["per_model"])}
