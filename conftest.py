"""Shared fixtures: the embedded Redis when no REDIS_URL is given, customers, users and API clients."""
import pytest
from django.conf import settings
from rest_framework.test import APIClient


@pytest.fixture(scope="session", autouse=True)
def _flush_outlasts_background_writers():
    """Transactional tests end with `flush` (one TRUNCATE of every table) while the workers and reapers
    some modules keep running may be mid-transaction: Postgres then breaks the deadlock by aborting one
    side, sometimes the TRUNCATE. That is a race of the test harness, not of the platform: the reset is
    retried (the platform's own transactions are retried by the platform)."""
    import time

    from django.core.management.commands import flush
    from django.db import OperationalError

    handle = flush.Command.handle

    def handle_retrying(self, *args, **options):
        for attempt in range(5):
            try:
                return handle(self, *args, **options)
            except Exception as exc:  # noqa: BLE001 - CommandError wraps the database's error
                if "deadlock detected" not in str(exc) and not isinstance(exc.__cause__, OperationalError):
                    raise
                if attempt == 4:
                    raise
                time.sleep(0.2)

    flush.Command.handle = handle_retrying
    yield
    flush.Command.handle = handle


@pytest.fixture(scope="session", autouse=True)
def _redis_server():
    """Tests use real Redis: the machine's (REDIS_URL) or the embedded one, started here."""
    from runtime import embedded_redis

    proc = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET) if settings.REDIS_EMBEDDED else None
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield settings.REDIS_URL
    embedded_redis.stop(proc)


@pytest.fixture
def make_customer(db):
    """make_customer("acme", role="owner") -> (customer, user); password is "password123"."""
    from accounts.models import Customer, Membership
    from django.contrib.auth import get_user_model

    counter = {"n": 0}

    def make(name=None, role="owner", username=None, **quotas):
        from accounts.models import Customer as C

        counter["n"] += 1
        name = name or f"customer{counter['n']}"
        customer = C.objects.filter(name=name).first() or Customer.objects.create(name=name, **quotas)
        username = username or f"{name}-{role}-{counter['n']}"
        user = get_user_model().objects.create_user(username=username, password="password123")
        Membership.objects.create(user=user, customer=customer, role=role)
        return customer, user

    return make


def host_lacks(what: str):
    """Skip a test because this host lacks a capability (say which). CI sets REQUIRE_HOST_CAPABILITIES=1:
    there every capability exists, so a missing one is a failure, never a silent skip."""
    import os

    message = f"this host lacks {what}"
    if os.environ.get("REQUIRE_HOST_CAPABILITIES") == "1":
        pytest.fail(f"{message} (REQUIRE_HOST_CAPABILITIES=1: CI must run every test)")
    pytest.skip(message)


def token_for(user, scope="customer") -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    # An access token alone: no refresh token, so no outstanding-token row (callable from async tests).
    access = AccessToken.for_user(user)
    access["scope"] = scope
    return str(access)


@pytest.fixture
def client_for():
    """client_for(user) -> an APIClient sending that user's customer access token."""

    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
        return client

    return make


@pytest.fixture
def owner(make_customer):
    """The owner of a customer "acme"."""
    return make_customer("acme")[1]


@pytest.fixture
def api(owner, client_for):
    """An APIClient acting as `owner`."""
    return client_for(owner)


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters live in the cache: every test starts with none (login tests exhaust them)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_channel_layers():
    """Every test gets channel layers of its own, as every process does. channels_redis' layer counts the
    receive() calls in flight on it and takes the first one's event loop for its receive lock (one loop per
    process in production); a test whose loop closes while a consumer still waits in receive() leaves that
    count and lock behind, and every later test's receive() then fails with "bound to a different event loop"
    (seen in two full runs, order-dependent)."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def staff_user(db):
    """A platform admin: a staff user with no customer; password "password123"."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="ops-admin", password="password123", is_staff=True)


@pytest.fixture
def admin_api(staff_user):
    """An APIClient with an admin-scoped token of `staff_user` and the right X-Admin-Key."""
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {token_for(staff_user, scope='admin')}", HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY
    )
    return client


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker):
    """One real daphne for the session's live tests, on the test database and Redis (tests/live_server.py).
    A test may stop and start it again (a server restart); it is running again when the test ends."""
    from tests.live_server import Daphne

    server = Daphne().start()
    yield server
    server.stop()
