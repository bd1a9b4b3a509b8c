"""Each API key gets a public id (`pk-llm-...`); existing keys get one each."""

from django.db import migrations, models

import ingestion.models


def backfill(apps, schema_editor):
    ApiKey = apps.get_model("ingestion", "ApiKey")
    for key in ApiKey.objects.filter(public_id__isnull=True).only("id"):
        key.public_id = ingestion.models.new_public_id()
        key.save(update_fields=["public_id"])


class Migration(migrations.Migration):

    dependencies = [
        ("ingestion", "0001_initial"),
    ]

    operations = [
        # Nullable first: a default computed once would give every existing key the same id.
        migrations.AddField(
            model_name="apikey",
            name="public_id",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apikey",
            name="public_id",
            field=models.CharField(default=ingestion.models.new_public_id, editable=False,
                                   max_length=64, unique=True),
        ),
    ]
