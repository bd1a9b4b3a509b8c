"""Rebuild an org's hourly span metrics over a window: days holding resent spans read from the
rollup again."""

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from costs.management.commands.recompute_costs import moment
from ingestion.models import Org
from ingestion.services.span_metrics import rebuild_span_metrics


class Command(BaseCommand):
    help = "Rebuild span_metrics_hourly for an org's days from --from to --to (exclusive)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="org id or slug")
        parser.add_argument("--from", dest="start", required=True, type=moment)
        parser.add_argument("--to", dest="end", required=True, type=moment)

    def handle(self, *args, org: str, start: datetime, end: datetime, **options):
        org_row = Org.objects.filter(**({"id": int(org)} if org.isdigit() else {"slug": org}))\
            .first()
        if org_row is None:
            raise CommandError(f"no org {org!r}")
        if start >= end:
            raise CommandError("--from must be before --to")
        first = start.astimezone(UTC).date()
        last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        rebuild_span_metrics(org_id=org_row.id, days=days)
        self.stdout.write(f"org {org_row.slug}: span metrics rebuilt for {len(days)} day(s)")
