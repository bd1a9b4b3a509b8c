"""Print each spans partition's committed offset, end offset, lag and in-flight batch, and
how many messages the dead-letter topic holds."""

from django.core.management.base import BaseCommand

from ingestion.services.dead_letters import dead_letter_count
from ingestion.services.partitions import partition_lags


class Command(BaseCommand):
    help = "Show the drain lag of every partition of the spans topic, and the dead letters."

    def handle(self, *args, **options):
        lags = partition_lags()
        self.stdout.write(f"{'partition':>9} {'committed':>12} {'end':>12} {'lag':>10} in-flight")
        for lag in lags:
            self.stdout.write(f"{lag.partition:>9} {lag.committed:>12} {lag.end:>12} "
                              f"{lag.lag:>10} {'yes' if lag.in_flight else ''}")
        self.stdout.write(f"{'total':>9} {'':>12} {'':>12} {sum(x.lag for x in lags):>10}")
        dead = dead_letter_count()
        self.stdout.write(f"dead letters: {dead.parked} parked, {dead.not_replayed} not "
                          "replayed (python manage.py replay_dead_letters)")
