"""A Django consumer's side of a group, without the consumer: `python
group_listen.py ROOM COUNT` joins group chat_ROOM through the project's
configured channel layer (CHANNEL_LAYER=redis-pubsub, REDIS_URL), prints
"listening" once channels_redis has sent its SUBSCRIBE (redis-py does not wait
for the confirmation: the caller watches PUBSUB NUMSUB), then prints each of
the next COUNT events it receives as one line of JSON (the event dict exactly
as a consumer's handler gets it, "user" included), and exits. Gives up after
60 s. Run it with the Channels venv and PYTHONPATH at
loadtest/baselines/channels (tests/interop/run.sh does).
"""
import asyncio
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django  # noqa: E402

django.setup()

from channels.layers import get_channel_layer  # noqa: E402


async def listen(room, count):
    layer = get_channel_layer()
    backend = type(layer).__module__ + "." + type(layer).__name__
    if backend != "channels_redis.pubsub.RedisPubSubChannelLayer":
        sys.exit(f"group_listen.py: expected RedisPubSubChannelLayer, the settings give {backend}")
    channel = await layer.new_channel()
    await layer.group_add(f"chat_{room}", channel)
    print("listening", flush=True)
    for _ in range(count):
        event = await layer.receive(channel)
        print(json.dumps(event), flush=True)
    await layer.group_discard(f"chat_{room}", channel)
    await layer.flush()


def main():
    room, count = sys.argv[1], int(sys.argv[2])
    asyncio.run(asyncio.wait_for(listen(room, count), 60))


if __name__ == "__main__":
    main()
