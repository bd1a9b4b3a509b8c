"""Admin for tenants and their keys: a key's secret is shown once, at creation."""

from django.contrib import admin, messages
from django.db.models import Count, Q

from ingestion.models import ApiKey, Org
from llmops.admin_actions import ActionPermissionsAdmin


def _show_secret(request, key: ApiKey, raw: str) -> None:
    messages.warning(request, f"API key for {key.org.slug}: {raw}  (copy it now; it is "
                              "stored hashed and will not be shown again); public key "
                              f"{key.public_id}")


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["prefix", "public_id", "name", "created_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are issued with the action, so the secret can be shown


@admin.register(Org)
class OrgAdmin(ActionPermissionsAdmin):
    list_display = ["slug", "name", "ingest_rate_limit", "sample_rate", "active_keys",
                    "created_at"]
    search_fields = ["slug", "name"]
    list_filter = ["created_at"]
    inlines = [ApiKeyInline]
    actions = ["issue_key"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))

    @admin.display(ordering="_active_keys", description="active keys")
    def active_keys(self, org: Org) -> int:
        return org._active_keys

    def has_issue_key_permission(self, request) -> bool:
        # Issuing a key changes what may write to an org: the change permission on keys.
        return request.user.has_perm("ingestion.change_apikey")

    @admin.action(description="Issue a new API key for each selected org",
                  permissions=["issue_key"])
    def issue_key(self, request, queryset) -> None:
        for org in queryset:
            key, raw = ApiKey.issue(org, name=f"issued by {request.user.get_username()}")
            _show_secret(request, key, raw)


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ActionPermissionsAdmin):
    list_display = ["prefix", "public_id", "org", "name", "is_active", "created_at",
                    "revoked_at"]
    list_filter = [ActiveFilter, "org"]
    list_select_related = ["org"]
    search_fields = ["prefix", "public_id", "name", "org__slug"]
    actions = ["revoke"]
    autocomplete_fields = ["org"]

    def get_fields(self, request, obj=None):
        return ["org", "name"] if obj is None else ["org", "name", "prefix", "public_id",
                                                     "created_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["org", "prefix", "public_id", "created_at", "revoked_at"]

    @admin.display(boolean=True, description="active")
    def is_active(self, key: ApiKey) -> bool:
        return key.is_active

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = ApiKey.issue(obj.org, name=obj.name)
        obj.pk, obj.prefix, obj.key_hash = key.pk, key.prefix, key.key_hash
        obj.public_id = key.public_id
        _show_secret(request, key, raw)

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke()
        self.message_user(request, "Revoked; a revoked key stops working within "
                                   "API_KEY_CACHE_TTL_S seconds.")
