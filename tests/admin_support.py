"""Helpers for the admin-plane tests: replay agents made through the services, and live frames off a group."""
import itertools

from asgiref.sync import async_to_sync

_names = itertools.count(1)


def make_agent(customer, *, actor="test", responses=("Hello. TERMINATE",), name=None, **fields):
    """A replay agent of `customer`, created the way the API creates one."""
    from agents.services import agent_create, model_config_create

    n = next(_names)
    model = model_config_create(actor=actor, customer=customer, name=f"replay-{n}", provider="replay",
                                responses=list(responses))
    return agent_create(actor=actor, customer=customer, name=name or f"agent-{n}", model=model, **fields)


class GroupListener:
    """Joins a Channels group on the real (Redis) layer, to see what services push to customers' streams."""

    def __init__(self, group):
        from channels.layers import get_channel_layer

        self.layer = get_channel_layer()
        self.group = group
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(group, self.channel)

    def receive(self, timeout=3.0):
        import asyncio

        async def one():
            return await asyncio.wait_for(self.layer.receive(self.channel), timeout)

        return async_to_sync(one)()

    def close(self):
        async_to_sync(self.layer.group_discard)(self.group, self.channel)


def admin_site_login(client, user):
    """Log a Django test client into the admin site as `user` with both factors: a session, and the session
    verified by a TOTP device of the user (what /admin/login/ does after a right password and code)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="test", confirmed=True)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def totp_now(device) -> str:
    """The code an authenticator app shows now for `device`."""
    from django_otp.oath import totp

    return str(totp(device.bin_key, device.step, device.t0, device.digits, device.drift)).zfill(device.digits)
