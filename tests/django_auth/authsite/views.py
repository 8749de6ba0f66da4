"""The views roomcast's --auth-url asks (SPEC section 9, "Ask the back end").

roomcast sends `GET /roomcast/auth/?room=<room>` with the browser's Cookie and
Origin. Django's own session middleware and AuthenticationMiddleware turn the
cookie into request.user; this view turns that into a verdict roomcast
understands:

- 200 {"user": <username>, "write": <bool>}  admit (write false: read-only);
- 401 {"error": ...}  not logged in. Not a 302 to the login page, which is
  what @login_required would answer: roomcast treats anything but 200, 401
  and 403 as the back end failing (503);
- 403 {"error": ...}  logged in, but not allowed in this room, or the join
  comes from an Origin that is not roomcast's.

Rooms: `staff-*` only for staff users; `news-*` read-only for non-staff;
every other room open to every logged-in user.
"""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse


def verdict(request):
    room = request.GET.get("room", "")
    user = request.user
    if not user.is_authenticated:
        return JsonResponse({"error": "log in to the Django site first"}, status=401)
    origin = request.headers.get("Origin", "")
    if origin not in settings.ROOMCAST_ORIGINS:
        return JsonResponse({"error": f"joins from origin {origin!r} are not allowed"}, status=403)
    if not room:
        return JsonResponse({"error": "which room?"}, status=403)
    if room.startswith("staff-") and not user.is_staff:
        return JsonResponse({"error": "staff rooms are for staff"}, status=403)
    write = user.is_staff or not room.startswith("news-")
    return JsonResponse({"user": user.get_username(), "write": write})


def roomcast_auth(request):
    return verdict(request)


@login_required
def roomcast_auth_login_required(request):
    """The same verdict behind @login_required: an anonymous join gets a 302
    to the login page, which roomcast must not take for a yes (it answers 503)."""
    return verdict(request)


def whoami(request):
    name = request.user.get_username() if request.user.is_authenticated else ""
    return HttpResponse(f"<!doctype html><title>whoami</title><p id=user>{name}</p>")
