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
