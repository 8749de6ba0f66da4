# Minimal Django settings for the seed's Channels chat app, shared by the
# `channels` and `channels-redis` baselines. The channel layer is chosen by
# the environment:
#   CHANNEL_LAYER=inmemory      channels.layers.InMemoryChannelLayer (default)
#   CHANNEL_LAYER=redis         channels_redis.core.RedisChannelLayer
#   CHANNEL_LAYER=redis-pubsub  channels_redis.pubsub.RedisPubSubChannelLayer
#   REDIS_URL=redis://127.0.0.1:6379/0   (the two Redis layers)
# Every layer keeps its library defaults (e.g. capacity 100 messages per channel
# and expiry 60 s), as an unconfigured seed deployment would. (redis-py is pinned
# to 7.x in requirements.txt: redis-py 8's new pool and socket-timeout defaults
# break channels_redis under load.)
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "roomcast-baseline-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "daphne",  # only so that `manage.py runserver` serves ASGI too
    "channels",
    "chat",
]

ASGI_APPLICATION = "chatsite.routing.application"

DATABASES = {}
USE_TZ = True

_layer = os.environ.get("CHANNEL_LAYER", "inmemory")
_redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
if _layer == "inmemory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
elif _layer == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis_url]},
        }
    }
elif _layer == "redis-pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis_url]},
        }
    }
else:
    raise RuntimeError(
        f"CHANNEL_LAYER={_layer!r}: expected inmemory, redis or redis-pubsub"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
