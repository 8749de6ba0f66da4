"""A Django back end's group_send, as a view or a management command would do
it: `python group_send.py ROOM MESSAGE_JSON [USER_JSON]` sends
{"type": "chat_message", "message": <MESSAGE_JSON decoded>} to group chat_ROOM
(with "user": <USER_JSON decoded> when given: the sender's identity, SPEC
section 9) through the project's configured channel layer
(CHANNEL_LAYER=redis-pubsub, REDIS_URL), then exits. Run it with the Channels venv and PYTHONPATH at
loadtest/baselines/channels (tests/interop/run.sh does).
"""
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402


def main():
    room, message = sys.argv[1], json.loads(sys.argv[2])
    event = {"type": "chat_message", "message": message}
    if len(sys.argv) > 3:
        event["user"] = json.loads(sys.argv[3])
    layer = get_channel_layer()
    backend = type(layer).__module__ + "." + type(layer).__name__
    if backend != "channels_redis.pubsub.RedisPubSubChannelLayer":
        sys.exit(f"group_send.py: expected RedisPubSubChannelLayer, the settings give {backend}")
    async_to_sync(layer.group_send)(f"chat_{room}", event)
    print(f"group_send.py: sent to chat_{room} through {backend}")


if __name__ == "__main__":
    main()
