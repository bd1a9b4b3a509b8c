from django.contrib import admin

from evaluation.models import EvaluatorConfig


@admin.register(EvaluatorConfig)
class EvaluatorConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "evaluator_type", "is_active", "is_critical",
                    "sampling_rate", "updated_at"]
    list_filter = ["evaluator_type", "is_active", "is_critical"]
    list_editable = ["is_active"]
    search_fields = ["name", "org__slug", "judge_model", "pattern"]
    list_select_related = ["org"]
    autocomplete_fields = ["org"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["org", "name", "evaluator_type", "is_active", "is_critical",
                           "sampling_rate"]}),
        ("Which spans (empty: any)", {"fields": ["match_models", "match_names", "match_kinds",
                                                 "match_tags"]}),
        ("Parameters", {"fields": ["target", "prompt_template", "judge_model", "pattern",
                                   "reference_text", "threshold", "min_length", "max_length"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
