from django.contrib import admin

from ingestion.models import ApiKey, Org


@admin.register(Org)
class OrgAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "ingest_rate_limit", "sample_rate", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "org", "name", "created_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "org__slug", "name"]
    readonly_fields = ["prefix", "key_hash"]
