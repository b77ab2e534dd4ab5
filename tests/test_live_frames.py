"""The channel layer's group_send_many (the workers' and services' live frames): real Redis."""
import asyncio
import uuid

from channels.layers import get_channel_layer

from autogen_platform import realtime


def test_frames_reach_the_groups_followed_in_order_and_skip_the_rest():
    async def scenario():
        layer = get_channel_layer()
        assert isinstance(layer, realtime.RedisChannelLayer)
        followed, unfollowed = f"task.f{uuid.uuid4().hex[:8]}", f"task.u{uuid.uuid4().hex[:8]}"
        channel = await layer.new_channel()
        await layer.group_add(followed, channel)
        try:
            frames = []
            for n in range(5):  # interleaved, as a worker's batch of several tasks' frames is
                frames += [(unfollowed, {"type": "x", "n": n}), (followed, {"type": "x", "n": n})]
            sent = []
            original = layer.group_send

            async def counting(group, message):
                sent.append(group)
                await original(group, message)

            layer.group_send = counting
            try:
                await realtime.group_send_many(layer, frames)
            finally:
                del layer.group_send
            got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(5)]
            assert got == [0, 1, 2, 3, 4]  # every frame of the followed group, in order
            assert sent == [followed] * 5  # the group nobody follows cost no send at all
        finally:
            await layer.group_discard(followed, channel)

    asyncio.run(scenario())
