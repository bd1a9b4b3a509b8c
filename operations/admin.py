"""Admin for operators: degradation level, config flags, backups, TTL changes."""

from django.contrib import admin, messages

from llmops.admin_actions import ActionPermissionsAdmin
from operations import tasks
from operations.models import (
    BackupRun,
    ConfigFlag,
    DegradationChange,
    DegradationLevel,
    DegradationState,
    TtlChange,
)
from operations.services.degradation import set_manual_level
from operations.services.flags import FLAGS
from operations.services.retention import set_spans_ttl


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is written by the platform, never edited by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DegradationState)
class DegradationStateAdmin(admin.ModelAdmin):
    list_display = ["effective_level_name", "level", "manual_level", "reason", "changed_by",
                    "changed_at"]
    fields = ["manual_level", "reason", "level", "calm_since", "changed_by", "changed_at"]
    readonly_fields = ["level", "calm_since", "changed_by", "changed_at"]

    @admin.display(description="level in force")
    def effective_level_name(self, state: DegradationState) -> str:
        level = DegradationLevel(state.effective_level)
        return f"{level.value}: {level.label}" + (
            " (manual)" if state.manual_level is not None else "")

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and not DegradationState.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        # Through the service, so the change is recorded, logged and announced.
        set_manual_level(obj.manual_level, reason=obj.reason or "set in the admin",
                         changed_by=request.user.get_username())


@admin.register(DegradationChange)
class DegradationChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "from_level", "to_level", "manual", "reason", "changed_by"]
    list_filter = ["manual", "to_level"]
    search_fields = ["reason", "changed_by"]
    date_hierarchy = "at"


@admin.register(ConfigFlag)
class ConfigFlagAdmin(admin.ModelAdmin):
    list_display = ["key", "type", "value", "description", "updated_at", "updated_by"]
    list_filter = ["type"]
    search_fields = ["key", "description"]
    readonly_fields = ["updated_at", "updated_by"]

    def save_model(self, request, obj, form, change) -> None:
        obj.updated_by = request.user.get_username()
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        # The operator picks a key: say which ones the platform reads.
        form.base_fields["key"].help_text = "Flags the platform reads (`<name>-org-<id>` for "
        form.base_fields["key"].help_text += "one org): " + "; ".join(
            f"{f.name} ({f.type}, default {f.default}): {f.description}"
            for f in FLAGS.values())
        return form


@admin.register(TtlChange)
class TtlChangeAdmin(admin.ModelAdmin):
    """Adding a row here applies an emergency TTL to spans and their content."""

    list_display = ["at", "table", "days", "reason", "changed_by"]
    search_fields = ["reason", "changed_by"]
    fields = ["days", "reason"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        first, *_ = set_spans_ttl(days=obj.days, reason=obj.reason,
                                  changed_by=request.user.get_username())
        obj.pk = first.pk
        messages.info(request, f"spans and their content now expire after {obj.days} days")


@admin.register(BackupRun)
class BackupRunAdmin(ReadOnlyAdmin, ActionPermissionsAdmin):
    list_display = ["started_at", "finished_at", "status", "database", "rows", "bytes",
                    "location", "progress"]
    list_filter = ["status", "database"]
    search_fields = ["location", "error"]
    date_hierarchy = "started_at"
    actions = ["back_up_now"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_back_up_permission(self, request) -> bool:
        # The history is read-only for everyone; starting a run is adding one.
        return request.user.has_perm("operations.add_backuprun")

    @admin.action(description="Back up ClickHouse now (queued; any selection)",
                  permissions=["back_up"])
    def back_up_now(self, request, queryset) -> None:
        tasks.backup_clickhouse.delay()
        self.message_user(request, "Backup queued; it appears here when it starts. Restore "
                                   "with `python manage.py restore_backup <id> --into <db>`, "
                                   "or over the live tables with `--yes` (see its --help).")
