"""Create an API key for an org (created if needed); the key is printed alone on the last line
(scripts read it there), its public id on the line before (Langfuse clients send both).
With --reuse-file, the key stored in that file is printed instead while it is still active."""

from pathlib import Path

from django.core.management.base import BaseCommand

from ingestion.models import ApiKey, Org, hash_key
from ingestion.services.keys import reusable_key


class Command(BaseCommand):
    help = "Create an API key for an org; prints the secret once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("--name", default="", help="a label for the key")
        parser.add_argument("--reuse-file", default="",
                            help="keep the key in this file and reuse it while it is active")

    def handle(self, *args, org_slug: str, name: str, reuse_file: str = "", **options):
        if reuse_file:
            raw, issued = reusable_key(path=Path(reuse_file), org_slug=org_slug, name=name)
            self.stdout.write(f"{'new' if issued else 'reused'} API key for org {org_slug} "
                              f"(kept in {reuse_file}):")
            key = ApiKey.objects.get(key_hash=hash_key(raw))
            self.stdout.write(f"public key: {key.public_id}")
            self.stdout.write(raw)
            return
        org, created = Org.objects.get_or_create(slug=org_slug, defaults={"name": org_slug})
        if created:
            self.stdout.write(f"created org {org.slug} (id {org.id})")
        key, raw = ApiKey.issue(org, name=name)
        self.stdout.write(f"API key {key.prefix}… for org {org.slug}; it is shown only now:")
        self.stdout.write(f"public key: {key.public_id}")
        self.stdout.write(raw)
