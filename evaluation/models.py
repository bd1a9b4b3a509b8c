"""Evaluator configs: which spans of an org are scored, how, how often, and how critically."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ingestion.models import Org


class EvaluatorType(models.TextChoices):
    LLM_JUDGE = "llm_judge", "LLM judge"
    REGEX = "regex", "Regex"
    JSON_VALID = "json_valid", "Valid JSON"
    CONTAINS = "contains", "Contains"
    LENGTH = "length", "Length"
    EMBEDDING_SIMILARITY = "embedding_similarity", "Embedding similarity"


# Types that call an external API: rate-limited, behind a breaker, one task each.
EXTERNAL_TYPES = {EvaluatorType.LLM_JUDGE, EvaluatorType.EMBEDDING_SIMILARITY}


class Target(models.TextChoices):
    OUTPUT = "output", "Output"
    INPUT = "input", "Input"


class EvaluatorConfig(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="evaluators")
    name = models.SlugField(max_length=100, help_text="The evaluator's name on its scores.")
    evaluator_type = models.CharField(max_length=32, choices=EvaluatorType.choices)
    is_active = models.BooleanField(default=True)
    is_critical = models.BooleanField(
        default=False, help_text="Critical evaluators still run at degradation level 1."
    )
    sampling_rate = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of traces evaluated, decided on the trace id (a trace is whole).",
    )
    # Which spans: each list empty means any; models and names take shell patterns (gpt-4*).
    match_models = models.JSONField(default=list, blank=True)
    match_names = models.JSONField(default=list, blank=True)
    match_kinds = models.JSONField(default=list, blank=True)
    match_tags = models.JSONField(
        default=list, blank=True, help_text="The span must carry every one of these tags."
    )
    target = models.CharField(max_length=8, choices=Target.choices, default=Target.OUTPUT,
                              help_text="What the built-in scorers read.")
    # Parameters; which apply depends on the type (see clean()).
    prompt_template = models.TextField(
        blank=True, help_text="Judge prompt with {{input}}, {{output}}, {{model}}, {{name}}; "
                              "empty: the default rubric.",
    )
    judge_model = models.CharField(max_length=200, blank=True,
                                   help_text="Empty: LLM_JUDGE_DEFAULT_MODEL.")
    pattern = models.CharField(max_length=1000, blank=True,
                               help_text="regex: a Python regular expression; contains: text.")
    reference_text = models.TextField(blank=True,
                                      help_text="embedding_similarity: compared to the target.")
    threshold = models.FloatField(null=True, blank=True,
                                  help_text="embedding_similarity: lowest passing similarity.")
    min_length = models.PositiveIntegerField(null=True, blank=True)
    max_length = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="evaluator_name_unique_per_org")
        ]
        ordering = ["org_id", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_evaluator_type_display()})"

    @property
    def is_external(self) -> bool:
        return self.evaluator_type in EXTERNAL_TYPES

    def clean(self) -> None:
        errors = {}
        for field in ("match_models", "match_names", "match_kinds", "match_tags"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors[field] = "a list of strings"
        kind = self.evaluator_type
        if kind == EvaluatorType.REGEX:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                errors["pattern"] = f"not a valid regular expression: {exc}"
        if kind in (EvaluatorType.REGEX, EvaluatorType.CONTAINS) and not self.pattern:
            errors["pattern"] = "required for this type"
        if kind == EvaluatorType.EMBEDDING_SIMILARITY and not self.reference_text:
            errors["reference_text"] = "required for embedding similarity"
        if (self.min_length is not None and self.max_length is not None
                and self.min_length > self.max_length):
            errors["max_length"] = "below min_length"
        if self.prompt_template and not re.search(r"\{\{\s*(input|output)\s*\}\}",
                                                  self.prompt_template):
            errors["prompt_template"] = "must use {{input}} or {{output}}"
        if errors:
            raise ValidationError(errors)
