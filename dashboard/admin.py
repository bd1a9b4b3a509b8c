from django.contrib import admin

from dashboard.models import Membership


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role", "org"]
    search_fields = ["user__username", "user__email", "org__slug"]
    autocomplete_fields = ["org"]
    raw_id_fields = ["user"]
