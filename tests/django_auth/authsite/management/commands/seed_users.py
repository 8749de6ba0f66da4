"""manage.py seed_users: the test users (made at every run, on a fresh database).

ann: staff (may join staff-* rooms, may write in news-*); bob: a plain user.
Both have the password given by DJANGO_AUTH_PASSWORD.
"""
import os

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the test users ann (staff) and bob."

    def handle(self, *args, **options):
        password = os.environ["DJANGO_AUTH_PASSWORD"]
        User.objects.create_user("ann", password=password, is_staff=True)
        User.objects.create_user("bob", password=password)
        self.stdout.write("seeded users ann (staff) and bob")
