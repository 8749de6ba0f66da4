#!/usr/bin/env python3
"""The test-only Django site of tests/django_auth (see README.md there)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
