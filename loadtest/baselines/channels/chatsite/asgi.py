# Entry point for daphne: `daphne chatsite.asgi:application`.
# Sets Django up before importing the seed's routing (which imports the consumer).
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django  # noqa: E402

django.setup()

from chatsite.routing import application  # noqa: E402,F401
