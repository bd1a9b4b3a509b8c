"""Create the project's Kafka topics (spans and dead letters) where they are missing."""

from django.core.management.base import BaseCommand

from llmops.kafka import ensure_topics


class Command(BaseCommand):
    help = "Create missing Kafka topics."

    def handle(self, *args, **options):
        created = ensure_topics()
        self.stdout.write(f"Kafka topics created: {', '.join(created) or 'none (all exist)'}")
