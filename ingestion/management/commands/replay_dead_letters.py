"""Re-publish parked span messages to the topic they came from, once their cause is fixed."""

import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from ingestion.services.dead_letters import replay_dead_letters

_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> datetime:
    """An ISO date-time (UTC if no zone), or an age such as 30m, 2h, 7d."""
    if match := _AGO.match(value):
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"--since {value!r}: expected an ISO date-time or an age (2h, 7d)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = ("Re-publish messages parked in the dead-letter topic to the spans topic, so the "
            "drain stores them (run it once their cause is fixed). What was re-published is "
            "remembered: a second run publishes nothing twice. Messages the filters leave "
            "out stay parked for a later run.")

    def add_arguments(self, parser):
        parser.add_argument("--since", type=parse_since,
                            help="only messages parked at or after this time (ISO or 2h, 7d)")
        parser.add_argument("--reason", default="",
                            help="only messages whose reason contains this text")
        parser.add_argument("--dry-run", action="store_true",
                            help="list what would be re-published; publish nothing")

    def handle(self, *args, since=None, reason="", dry_run=False, **options):
        report = replay_dead_letters(since=since, reason=reason, dry_run=dry_run)
        for partition, offset, why in report.replayed:
            self.stdout.write(f"{partition}:{offset} {why}")
        verb = "would re-publish" if dry_run else "re-published"
        self.stdout.write(f"{verb} {len(report.replayed)}, left parked {report.skipped}")
