"""Print each spans partition's committed offset, end offset, lag and in-flight batch."""

from django.core.management.base import BaseCommand

from ingestion.services.drain import partition_lags


class Command(BaseCommand):
    help = "Show the drain lag of every partition of the spans topic."

    def handle(self, *args, **options):
        lags = partition_lags()
        self.stdout.write(f"{'partition':>9} {'committed':>12} {'end':>12} {'lag':>10} in-flight")
        for lag in lags:
            self.stdout.write(f"{lag.partition:>9} {lag.committed:>12} {lag.end:>12} "
                              f"{lag.lag:>10} {'yes' if lag.in_flight else ''}")
        self.stdout.write(f"{'total':>9} {'':>12} {'':>12} {sum(x.lag for x in lags):>10}")
