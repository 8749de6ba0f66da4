# The seed document's routing.py, verbatim except for the app's module name
# (`your_app` -> `chat`). Like the seed, only the "websocket" protocol is routed.
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path
from chat.consumers import ChatConsumer

application = ProtocolTypeRouter({
    "websocket": URLRouter([
        path('ws/chat/<str:room_name>/', ChatConsumer.as_asgi()),
    ]),
})
