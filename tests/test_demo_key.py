"""`make run` reuses one demo key: the key kept under var/ is given back while it is active."""

import pytest

from ingestion.models import ApiKey, Org
from ingestion.services.keys import reusable_key

pytestmark = pytest.mark.django_db


def test_the_demo_key_is_issued_once_and_reused_while_active(tmp_path):
    path = tmp_path / "var" / "demo_api_key"
    first, issued = reusable_key(path=path, org_slug="demo-reuse", name="demo key")
    again, issued_again = reusable_key(path=path, org_slug="demo-reuse", name="demo key")
    assert (issued, issued_again) == (True, False)
    assert again == first == path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600  # a secret: readable by its owner only
    org = Org.objects.get(slug="demo-reuse")
    assert ApiKey.objects.filter(org=org).count() == 1
    ApiKey.objects.get(org=org).revoke()  # revoked: a new one, stored for next time
    third, issued_third = reusable_key(path=path, org_slug="demo-reuse", name="demo key")
    assert issued_third and third != first and path.read_text().strip() == third
    assert ApiKey.objects.filter(org=org).active().count() == 1


def test_the_command_prints_the_same_key_each_run(tmp_path):
    from io import StringIO

    from django.core.management import call_command

    outputs = []
    for _ in range(2):
        out = StringIO()
        call_command("create_api_key", "demo-cmd", "--name", "demo key",
                     "--reuse-file", str(tmp_path / "demo_api_key"), stdout=out)
        outputs.append(out.getvalue().strip().splitlines()[-1])
    assert outputs[0] == outputs[1]
    assert ApiKey.objects.filter(org__slug="demo-cmd").count() == 1
