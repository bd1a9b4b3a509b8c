from django.contrib import admin

from costs.models import Price


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["model_name", "provider", "model_pattern", "input_price", "output_price",
                    "cached_input_price", "cache_write_price", "effective_from", "effective_to",
                    "priority", "source", "operator_edited", "updated_at"]
    list_filter = ["source", "operator_edited", "provider"]
    search_fields = ["model_name", "model_pattern", "provider"]
    readonly_fields = ["source", "sync_key", "created_at", "updated_at"]
    ordering = ["provider", "model_name", "effective_from"]
    actions = ["hand_back_to_sync"]

    def save_model(self, request, obj: Price, form, change: bool) -> None:
        # An operator's word is final: sync_prices leaves this row alone from now on.
        obj.operator_edited = True
        super().save_model(request, obj, form, change)

    @admin.action(description="Let sync_prices manage the selected rows again")
    def hand_back_to_sync(self, request, queryset) -> None:
        count = queryset.filter(source=Price.Source.GENAI_PRICES).update(operator_edited=False)
        self.message_user(request, f"{count} row(s) will follow the package at the next sync.")
