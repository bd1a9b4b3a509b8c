"""Reprice an org's stored spans over a window, after a price fix; rollups and reports follow."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from costs.services.recompute import recompute_costs
from ingestion.models import Org


def moment(text: str) -> datetime:
    """RFC 3339 or a bare date (midnight); UTC unless an offset is given."""
    try:
        value = parse_datetime(text)
    except ValueError:
        value = None
    if value is None:
        raise CommandError(f"not a date or time: {text!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Reprice an org's spans starting in [--from, --to) with the prices in force now."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="org id or slug")
        parser.add_argument("--from", dest="start", required=True, type=moment)
        parser.add_argument("--to", dest="end", required=True, type=moment)

    def handle(self, *args, org: str, start: datetime, end: datetime, **options):
        found = Org.objects.filter(**({"id": int(org)} if org.isdigit() else {"slug": org}))
        org_row = found.first()
        if org_row is None:
            raise CommandError(f"no org {org!r}")
        if start >= end:
            raise CommandError("--from must be before --to")
        result = recompute_costs(org_id=org_row.id, start=start, end=end)
        self.stdout.write(
            f"org {org_row.slug}: {result.spans_read} spans read, {result.spans_repriced} "
            f"repriced; rollups rebuilt for {len(result.days_rebuilt)} day(s)")
