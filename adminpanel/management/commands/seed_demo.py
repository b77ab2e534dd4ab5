"""`manage.py seed_demo`: the demo objects `make run` starts with, each created only when absent.

A platform admin "admin" (staff + superuser), a customer "demo" with its owner "demo", a replay
model configuration "demo-replay", two agents ("demo-agent", "demo-critic") and a round-robin team
"demo-team". Passwords are random, printed once when the account is created and stored nowhere
(only their hashes); a later run says the accounts exist and prints no password. The admin also gets a TOTP
device (the Django admin's second factor) whose otpauth:// URI is printed once, when it is created.
"""
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

ACTOR = "system:seed_demo"
CUSTOMER = "demo"
ADMIN_USERNAME = "admin"
OWNER_USERNAME = "demo"
MODEL_NAME = "demo-replay"
REPLAY_RESPONSES = ["Hello! I am the demo agent. TERMINATE"]
AGENTS = [
    ("demo-agent", "A friendly demo agent answering from a scripted (replay) model.",
     "You are a helpful assistant. Answer briefly and end with TERMINATE."),
    ("demo-critic", "Reviews the demo agent's answer.",
     "You review the previous answer in one sentence and end with TERMINATE."),
]
TEAM_NAME = "demo-team"
TEAM_TERMINATION = {"max_messages": 4, "text_mention": "TERMINATE"}


class Command(BaseCommand):
    help = "Create the demo admin, customer, model configuration, agents and team when absent (idempotent)."

    def handle(self, *args, **options):
        created_passwords = {}
        with transaction.atomic():
            admin_password = self._admin()
            if admin_password:
                created_passwords[ADMIN_USERNAME] = admin_password
            admin_device = self._admin_device()
            customer = self._customer()
            owner_password = self._owner(customer)
            if owner_password:
                created_passwords[OWNER_USERNAME] = owner_password
            model = self._model(customer)
            agents = [self._agent(customer, model, *spec) for spec in AGENTS]
            self._team(customer, agents)
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

        from adminpanel.services import admin_otp_enrol

        admin = get_user_model().objects.filter(username=ADMIN_USERNAME, is_staff=True).first()
        if admin is None or TOTPDevice.objects.filter(user=admin).exists():
            return None
        return admin_otp_enrol(actor=ACTOR, user=admin, name="demo")

    def _customer(self):
        from accounts.models import Customer
        from accounts.services import customer_create

        customer = Customer.objects.filter(name=CUSTOMER).first()
        if customer is None:
            customer = customer_create(actor=ACTOR, name=CUSTOMER)
            self._created(f"customer {CUSTOMER}")
        return customer

    def _owner(self, customer) -> str | None:
        from accounts.services import member_add

        if get_user_model().objects.filter(username=OWNER_USERNAME).exists():
            return None
        password = _password()
        member_add(actor=ACTOR, customer=customer, username=OWNER_USERNAME, password=password, role="owner")
        return password

    def _model(self, customer):
        from agents.models import ModelConfig
        from agents.services import model_config_create

        model = ModelConfig.objects.filter(customer=customer, name=MODEL_NAME).first()
        if model is None:
            model = model_config_create(
                actor=ACTOR, customer=customer, name=MODEL_NAME, provider="replay", responses=REPLAY_RESPONSES
            )
            self._created(f"model configuration {MODEL_NAME} (replay)")
        return model

    def _agent(self, customer, model, name, description, system_message):
        from agents.models import Agent
        from agents.services import agent_create

        agent = Agent.objects.filter(customer=customer, name=name).first()
        if agent is None:
            agent = agent_create(
                actor=ACTOR, customer=customer, name=name, model=model,
                description=description, system_message=system_message,
            )
            self._created(f"agent {name}")
        return agent

    def _team(self, customer, agents):
        from teams.models import Team

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
                out(f"      browser:     {base}/api-auth/login/ then {base}/api/")
            if ADMIN_USERNAME in passwords:
                out(f"  platform admin (staff)      username: {ADMIN_USERNAME}  password: {passwords[ADMIN_USERNAME]}")
                out(f"      Django admin: {base}/admin/ (the password and a code from the authenticator below)")
                out(f"      admin API:   POST {base}/api/admin/auth/token/ and then /api/admin/..., each with header"
                    f" X-Admin-Key: {_admin_key_hint()}")
            out("")
        if admin_device is not None:
            from adminpanel.management.commands.admin_otp import enrolment_lines

            out(self.style.WARNING(f"Second factor of {ADMIN_USERNAME!r} for the Django admin (shown only now):"))
            for line in enrolment_lines(admin_device):
                out(line)
            out(f"  lost it? `manage.py admin_otp enrol {ADMIN_USERNAME} --replace`")
            out("")
        if existing:
            out(f"seed_demo: the demo accounts exist ({', '.join(existing)}); their passwords were printed when they"
                f" were created. Reset one with `manage.py changepassword USERNAME`.")
        if not passwords:
            out(f"seed_demo: demo objects present: customer {CUSTOMER}, model {MODEL_NAME},"
                f" agents {', '.join(a[0] for a in AGENTS)}, team {TEAM_NAME}")


def _password() -> str:
    return secrets.token_urlsafe(12)


def _admin_key_hint() -> str:
    if settings.ADMIN_API_KEY == settings.DEV_ADMIN_API_KEY:
        return f"{settings.ADMIN_API_KEY} (the development default; set ADMIN_API_KEY in production)"
    return "the ADMIN_API_KEY you configured"


def _team_create(customer, agents):
    from teams.services import team_create

    return team_create(
        actor=ACTOR, customer=customer, name=TEAM_NAME, members=agents, mode="round_robin",
        termination=dict(TEAM_TERMINATION),
    )
