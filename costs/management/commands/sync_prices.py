"""Create and refresh price rows from the genai-prices package; operators' edits are kept."""

from django.core.management.base import BaseCommand

from costs.services.sync import sync_prices


class Command(BaseCommand):
    help = "Seed and refresh prices from the genai-prices package (rows operators saved stay)."

    def handle(self, *args, **options):
        result = sync_prices()
        self.stdout.write(
            f"prices: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.kept_operator_edits} kept as operators set")
