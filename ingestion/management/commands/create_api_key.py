"""Create an API key for an org (created if needed); the key is printed alone on the last line."""

from django.core.management.base import BaseCommand

from ingestion.models import ApiKey, Org


class Command(BaseCommand):
    help = "Create an API key for an org; prints the secret once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("--name", default="", help="a label for the key")

    def handle(self, *args, org_slug: str, name: str, **options):
        org, created = Org.objects.get_or_create(slug=org_slug, defaults={"name": org_slug})
        if created:
            self.stdout.write(f"created org {org.slug} (id {org.id})")
        key, raw = ApiKey.issue(org, name=name)
        self.stdout.write(f"API key {key.prefix}… for org {org.slug}; it is shown only now:")
        self.stdout.write(raw)
