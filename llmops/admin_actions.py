"""Admin actions that declare their permissions answer 403 to a user without them.

Django hides an action the user may not run, and a POST naming it anyway only comes back
with "No action selected"; an operator's script or a stale page deserves a clear refusal."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied


class ActionPermissionsAdmin(admin.ModelAdmin):
    def changelist_view(self, request, extra_context=None):
        name = request.POST.get("action") if request.method == "POST" else None
        if name and name not in self.get_actions(request) and self._declares(name):
            raise PermissionDenied(f"you may not run the admin action {name!r}")
        return super().changelist_view(request, extra_context)

    def _declares(self, name: str) -> bool:
        return any(getattr(action, "__name__", action) == name
                   for action in (self.actions or []))
