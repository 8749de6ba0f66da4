from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("whoami/", views.whoami, name="whoami"),
    path("roomcast/auth/", views.roomcast_auth, name="roomcast-auth"),
    path("roomcast/auth-login-required/", views.roomcast_auth_login_required),
]
