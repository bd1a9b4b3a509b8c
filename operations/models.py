"""Operational state kept in the Django DB: the degradation level."""

from django.db import models


class DegradationLevel(models.IntegerChoices):
    """The design document's graceful degradation modes."""

    NORMAL = 0, "Normal"
    REDUCED_EVALUATION = 1, "Reduced evaluation"
    REDUCED_SAMPLING = 2, "Reduced sampling"
    ESSENTIAL_ONLY = 3, "Essential only"
    READ_ONLY = 4, "Read-only"


class DegradationState(models.Model):
    """One row: the level in force, and an operator's manual level that wins over triggers."""

    level = models.PositiveSmallIntegerField(
        choices=DegradationLevel.choices, default=DegradationLevel.NORMAL
    )
    manual_level = models.PositiveSmallIntegerField(
        choices=DegradationLevel.choices, null=True, blank=True,
        help_text="Set by an operator; wins over the automatic triggers until cleared.",
    )
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "degradation state"

    def __str__(self) -> str:
        return f"level {self.effective_level}"

    @property
    def effective_level(self) -> int:
        return self.level if self.manual_level is None else self.manual_level

    @classmethod
    def load(cls) -> "DegradationState":
        state, _ = cls.objects.get_or_create(pk=1)
        return state
