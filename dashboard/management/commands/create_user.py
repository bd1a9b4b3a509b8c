"""Create a dashboard user (or update one) with a role in an org (created if needed). The
password, given or generated, is printed alone on the last line."""

import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from dashboard.models import Membership, Role
from ingestion.models import Org
from llmops.local_secrets import local_secret


class Command(BaseCommand):
    help = "Create a user who signs in with their email, as a member of an org."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--org", required=True, help="org slug (created if needed)")
        parser.add_argument("--role", default=Role.VIEWER, choices=Role.values)
        parser.add_argument("--password", default="",
                            help="set this password (default: generate one and print it)")
        parser.add_argument("--password-file", default="",
                            help="keep the generated password in this file (mode 0600) and "
                                 "reuse it: `make run`'s demo login")
        parser.add_argument("--staff", action="store_true",
                            help="also a staff user: sees the Operations page")

    @transaction.atomic
    def handle(self, *args, email: str, org: str, role: str, password: str,
               password_file: str = "", staff: bool = False, **options):
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"email: {email!r} is not an email address") from exc
        org_obj, created = Org.objects.get_or_create(slug=org, defaults={"name": org})
        if created:
            self.stdout.write(f"created org {org_obj.slug} (id {org_obj.id})")
        User = get_user_model()
        user, new_user = User.objects.get_or_create(username=email, defaults={"email": email})
        if not password:
            password = (local_secret(Path(password_file), 12) if password_file
                        else secrets.token_urlsafe(12))
        user.set_password(password)
        user.is_staff = user.is_staff or staff
        user.save()
        Membership.objects.update_or_create(user=user, org=org_obj, defaults={"role": role})
        self.stdout.write(f"{'created' if new_user else 'updated'} user {email}, {role} of "
                          f"org {org_obj.slug}; sign in with this password:")
        self.stdout.write(password)
