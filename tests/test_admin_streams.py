"""What admins do reaches customers' live `/ws/events/` streams: broadcasts to all, killswitch notices to those in scope."""
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from autogen_platform.asgi import application
from conftest import token_for

pytestmark = pytest.mark.django_db(transaction=True)


async def _events(user):
    communicator = WebsocketCommunicator(application, f"/ws/events/?token={token_for(user)}")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ready"
    return communicator


async def test_broadcast_and_killswitch_notices_reach_the_right_streams(make_customer, admin_api):
    acme, alice = await sync_to_async(make_customer)("acme")
    _, bob = await sync_to_async(make_customer)("globex")
    alice_ws, bob_ws = await _events(alice), await _events(bob)
    try:
        # a broadcast reaches everyone
        response = await sync_to_async(admin_api.post)("/api/admin/broadcast/",
                                                       {"message": "Maintenance at noon", "level": "warning"},
                                                       format="json")
        assert response.status_code == 201
        for ws in (alice_ws, bob_ws):
            frame = await ws.receive_json_from(timeout=5)
            assert frame["type"] == "broadcast"
            assert (frame["notification"]["message"], frame["notification"]["level"]) == ("Maintenance at noon",
                                                                                         "warning")

        # a customer killswitch is announced to that customer only
        await sync_to_async(admin_api.post)("/api/admin/killswitch/",
                                            {"engaged": True, "customer": acme.pk, "reason": "abuse"}, format="json")
        frame = await alice_ws.receive_json_from(timeout=5)
        assert {k: frame[k] for k in ("type", "engaged", "scope", "customer", "reason")} == {
            "type": "killswitch", "engaged": True, "scope": "customer", "customer": acme.pk, "reason": "abuse"}
        assert "abuse" in frame["notification"]["message"]
        assert await bob_ws.receive_nothing(timeout=0.3)

        # the global one, and its release, to everyone
        await sync_to_async(admin_api.post)("/api/admin/killswitch/", {"engaged": True, "reason": "incident"},
                                            format="json")
        await sync_to_async(admin_api.post)("/api/admin/killswitch/", {"engaged": False}, format="json")
        for ws in (alice_ws, bob_ws):
            engaged = await ws.receive_json_from(timeout=5)
            released = await ws.receive_json_from(timeout=5)
            assert (engaged["scope"], engaged["engaged"]) == ("global", True)
            assert (released["scope"], released["engaged"]) == ("global", False)
    finally:
        await alice_ws.disconnect()
        await bob_ws.disconnect()
