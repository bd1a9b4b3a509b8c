from django.contrib import admin

from operations.models import DegradationState


@admin.register(DegradationState)
class DegradationStateAdmin(admin.ModelAdmin):
    list_display = ["effective_level", "level", "manual_level", "reason", "changed_by",
                    "changed_at"]
