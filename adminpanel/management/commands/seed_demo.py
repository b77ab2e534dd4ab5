"""`manage.py seed_demo`: the demo objects `make run` starts with, each created only when absent.

A platform admin "admin" (staff + superuser), a customer "demo" with its owner "demo", replay model configurations
(scripted answers, no network; with example prices so the studio shows costs), the agents "demo-agent" and
"demo-critic" in the round-robin team "demo-team" (both speak: the agent answers, the critic reviews and ends with
TERMINATE), "demo-calculator" (calls its calculator tool: its replay model scripts the tool call) and "demo-coder"
(runs the Python its model writes). Passwords are random, printed once when the account is created and stored nowhere
(only their hashes); a later run says the accounts exist and prints no password. The admin also gets a TOTP
device (the Django admin's second factor) whose otpauth:// URI is printed once, when it is created.

Demo runs: when the demo customer has no task at all, one run of each agent and of the team is submitted through
the normal path (tasks.services.task_create, as the API does): they are queued now and run, for real, as soon as the
workers of `make run` start, so the studio's history, transcripts and usage charts are not empty.
"""
import contextlib
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Customer
from accounts.services import customer_create, member_add
from adminpanel.management.commands.admin_otp import enrolment_lines
from adminpanel.services import admin_otp_enrol
from agents.models import Agent, ModelConfig
from agents.services import agent_create, model_config_create
from autogen_platform.redis_clients import web_redis
from tasks.models import Task
from tasks.services import task_create
from teams.models import Team
from teams.services import team_create

ACTOR = "system:seed_demo"
CUSTOMER = "demo"
ADMIN_USERNAME = "admin"
OWNER_USERNAME = "demo"
MODEL_NAME = "demo-replay"
REPLAY_RESPONSES = ["Hello! I am the demo agent. An AutoGen **team** lets several agents take turns on one task: "
                    "I answer first, then my critic reviews the answer."]
# name -> (responses, price per million prompt tokens, per million completion tokens)
MODELS = {
    MODEL_NAME: (REPLAY_RESPONSES, "0.15", "0.60"),
    "demo-critic-replay": (["Good answer. One thing to add: every run is kept with its transcript, tokens and "
                            "cost. TERMINATE"], "0.15", "0.60"),
    "demo-calculator-replay": (['{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]}',
                                "6 times 7 is 42. TERMINATE"], "2.50", "10.00"),
    "demo-coder-replay": (["Let me compute it:\n```python\nprint(sum(range(1, 101)))\n```",
                           "The sum of the numbers from 1 to 100 is 5050. TERMINATE"], "2.50", "10.00"),
}
# name, model, description, system message, extra fields
AGENTS = [
    ("demo-agent", MODEL_NAME, "A friendly demo agent answering from a scripted (replay) model.",
     "You are a helpful assistant. Answer briefly.", {}),
    ("demo-critic", "demo-critic-replay", "Reviews the demo agent's answer.",
     "You review the previous answer in one sentence and end with TERMINATE.", {}),
    ("demo-calculator", "demo-calculator-replay", "Answers arithmetic with its calculator tool.",
     "Use the calculator tool for arithmetic, then answer and end with TERMINATE.", {"tools": ["calculator"]}),
    ("demo-coder", "demo-coder-replay", "Writes Python and runs it in its sandbox.",
     "Write Python in a fenced code block to compute answers; when you have the output, answer and end with TERMINATE.",
     {"code_execution": True}),
]
TEAM_NAME = "demo-team"
TEAM_MEMBERS = ["demo-agent", "demo-critic"]
TEAM_TERMINATION = {"max_messages": 4, "text_mention": "TERMINATE"}
DEMO_RUNS = [
    ("team", TEAM_NAME, "What is an AutoGen team, in one sentence?"),
    ("agent", "demo-calculator", "What is 6 times 7?"),
    ("agent", "demo-coder", "What is the sum of the numbers from 1 to 100?"),
    ("agent", "demo-agent", "Say hello."),
]


class Command(BaseCommand):
    help = "Create the demo admin, customer, model configuration, agents and team when absent (idempotent)."

    def handle(self, *args, **options):
        created_passwords = {}
        self._quiet_enqueue = False
        with _quiet_commit_hooks(lambda: self._quiet_enqueue), transaction.atomic():
            admin_password = self._admin()
            if admin_password:
                created_passwords[ADMIN_USERNAME] = admin_password
            admin_device = self._admin_device()
            customer = self._customer()
            owner_password = self._owner(customer)
            if owner_password:
                created_passwords[OWNER_USERNAME] = owner_password
            models = {name: self._model(customer, name, *spec) for name, spec in MODELS.items()}
            agents = {spec[0]: self._agent(customer, models[spec[1]], *spec[:1], *spec[2:]) for spec in AGENTS}
            team = self._team(customer, [agents[name] for name in TEAM_MEMBERS])
            self._runs(customer, {("agent", n): a for n, a in agents.items()} | {("team", TEAM_NAME): team})
        self._report(created_passwords, admin_device)

    # -- objects --------------------------------------------------------------------------------
    def _admin(self) -> str | None:
        User = get_user_model()
        if User.objects.filter(username=ADMIN_USERNAME).exists():
            return None
        password = _password()
        User.objects.create_superuser(username=ADMIN_USERNAME, email="", password=password)
        return password

    def _admin_device(self):
        """The demo admin's TOTP device (the Django admin's second factor), created once, when it has none."""
        from django_otp.plugins.otp_totp.models import TOTPDevice

        admin = get_user_model().objects.filter(username=ADMIN_USERNAME, is_staff=True).first()
        if admin is None or TOTPDevice.objects.filter(user=admin).exists():
            return None
        return admin_otp_enrol(actor=ACTOR, user=admin, name="demo")

    def _customer(self):
        customer = Customer.objects.filter(name=CUSTOMER).first()
        if customer is None:
            customer = customer_create(actor=ACTOR, name=CUSTOMER)
            self._created(f"customer {CUSTOMER}")
        return customer

    def _owner(self, customer) -> str | None:
        if get_user_model().objects.filter(username=OWNER_USERNAME).exists():
            return None
        password = _password()
        member_add(actor=ACTOR, customer=customer, username=OWNER_USERNAME, password=password, role="owner")
        return password

    def _model(self, customer, name, responses, prompt_price, completion_price):
        from decimal import Decimal

        model = ModelConfig.objects.filter(customer=customer, name=name).first()
        if model is None:
            model = model_config_create(
                actor=ACTOR, customer=customer, name=name, provider="replay", responses=list(responses),
                price_prompt_per_million=Decimal(prompt_price), price_completion_per_million=Decimal(completion_price),
            )
            self._created(f"model configuration {name} (replay)")
        return model

    def _agent(self, customer, model, name, description, system_message, extra):
        agent = Agent.objects.filter(customer=customer, name=name).first()
        if agent is None:
            agent = agent_create(
                actor=ACTOR, customer=customer, name=name, model=model,
                description=description, system_message=system_message, **extra,
            )
            self._created(f"agent {name}")
        return agent

    def _runs(self, customer, targets):
        """One run of each demo agent and of the team, through task_create, when the customer has none at all."""
        if Task.objects.filter(customer=customer).exists():
            return
        for kind, name, text in DEMO_RUNS:
            target = targets.get((kind, name))
            if target is not None:
                task_create(actor=ACTOR, customer=customer, input=text, **{kind: target})
        self._created(f"{len(DEMO_RUNS)} demo runs (queued: they run when the workers start; see /studio/runs/)")
        # `make run` seeds before it starts the embedded Redis: the jobs cannot go on the queue yet. The tasks are
        # committed all the same and the reaper enqueues them (TASK_REQUEUE_SECONDS) once the platform is up; the
        # failed enqueues are expected here, so they are not logged as errors.
        self._quiet_enqueue = not _redis_answers()

    def _team(self, customer, agents):
        team = Team.objects.filter(customer=customer, name=TEAM_NAME).first()
        if team is None:
            team = _team_create(customer, agents)
            self._created(f"team {TEAM_NAME} (round_robin: {', '.join(a.name for a in agents)})")
        return team

    # -- output ---------------------------------------------------------------------------------
    def _created(self, what: str) -> None:
        self.stdout.write(f"seed_demo: created {what}")

    def _report(self, passwords: dict, admin_device=None) -> None:
        out = self.stdout.write
        base = f"http://127.0.0.1:{settings.PORT}"
        existing = [u for u in (ADMIN_USERNAME, OWNER_USERNAME) if u not in passwords]
        if passwords:
            out("")
            out(self.style.WARNING("Demo credentials (shown only now: the passwords are stored nowhere)"))
            if OWNER_USERNAME in passwords:
                out(f"  customer {CUSTOMER!r}, role owner   username: {OWNER_USERNAME}  password: {passwords[OWNER_USERNAME]}")
                out(f"      API token:   POST {base}/api/auth/token/ {{\"username\": \"{OWNER_USERNAME}\", \"password\": \"...\"}}")
                out(f"      studio:      {base}/studio/ (sign in with these; the browsable API: {base}/api/)")
            if ADMIN_USERNAME in passwords:
                out(f"  platform admin (staff)      username: {ADMIN_USERNAME}  password: {passwords[ADMIN_USERNAME]}")
                out(f"      Django admin: {base}/admin/ (the password and a code from the authenticator below)")
                out(f"      admin API:   POST {base}/api/admin/auth/token/ and then /api/admin/..., each with header"
                    f" X-Admin-Key: {_admin_key_hint()}")
            out("")
        if admin_device is not None:
            out(self.style.WARNING(f"Second factor of {ADMIN_USERNAME!r} for the Django admin (shown only now):"))
            for line in enrolment_lines(admin_device):
                out(line)
            out(f"  lost it? `manage.py admin_otp enrol {ADMIN_USERNAME} --replace`")
            out("")
        if existing:
            out(f"seed_demo: the demo accounts exist ({', '.join(existing)}); their passwords were printed when they"
                f" were created. Reset one with `manage.py changepassword USERNAME`.")
        if not passwords:
            out(f"seed_demo: demo objects present: customer {CUSTOMER}, models {', '.join(MODELS)},"
                f" agents {', '.join(a[0] for a in AGENTS)}, team {TEAM_NAME}")


def _redis_answers() -> bool:
    try:
        return bool(web_redis(settings.RQ_QUEUES["default"]["URL"]).ping())
    except Exception:  # noqa: BLE001 - any failure means: not reachable now
        return False


@contextlib.contextmanager
def _quiet_commit_hooks(quiet):
    """While the transaction commits, drop the errors of its on-commit hooks when quiet() says they are expected."""
    import logging

    # the on-commit hooks' own errors (the enqueue) and the live announcements' warnings
    loggers = [logging.getLogger(name) for name in ("django.db.backends.base", "autogen_platform.realtime")]
    dropped = logging.Filter()
    dropped.filter = lambda record: not quiet()
    for hooks_logger in loggers:
        hooks_logger.addFilter(dropped)
    try:
        yield
    finally:
        for hooks_logger in loggers:
            hooks_logger.removeFilter(dropped)


def _password() -> str:
    return secrets.token_urlsafe(12)


def _admin_key_hint() -> str:
    if settings.ADMIN_API_KEY == settings.DEV_ADMIN_API_KEY:
        return f"{settings.ADMIN_API_KEY} (the development default; set ADMIN_API_KEY in production)"
    return "the ADMIN_API_KEY you configured"


def _team_create(customer, agents):
    return team_create(
        actor=ACTOR, customer=customer, name=TEAM_NAME, members=agents, mode="round_robin",
        termination=dict(TEAM_TERMINATION),
    )
