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
    # Since when the triggers have asked for a lower level than `level` (for hysteresis).
    calm_since = models.DateTimeField(null=True, blank=True)

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


class DegradationChange(models.Model):
    """Every change of the level in force: when, from what to what, why and by whom."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    from_level = models.PositiveSmallIntegerField(choices=DegradationLevel.choices)
    to_level = models.PositiveSmallIntegerField(choices=DegradationLevel.choices)
    manual = models.BooleanField(default=False)
    reason = models.CharField(max_length=500)
    changed_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.from_level} -> {self.to_level} ({self.reason})"


class ConfigFlag(models.Model):
    """A typed setting an operator may change at run time; every process sees the change
    within a second (pub/sub), and at worst after CONFIG_CACHE_TTL_S."""

    class Type(models.TextChoices):
        BOOL = "bool", "boolean"
        INT = "int", "integer"
        FLOAT = "float", "number"
        STR = "str", "text"

    key = models.SlugField(max_length=100, unique=True)
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.BOOL)
    value = models.CharField(max_length=1000, blank=True)
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from operations.services.flags import check_flag

        try:
            value = self.typed_value()
        except ValueError as exc:
            raise ValidationError(
                {"value": f"not a valid {self.get_type_display()}: {exc}"}) from exc
        # A flag the platform reads must have its registered type and range: `false` saved as
        # text would read as true.
        check_flag(self.key, self.type, value)

    def typed_value(self):
        if self.type == self.Type.BOOL:
            lowered = self.value.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                raise ValueError("use true or false")
            return lowered in {"true", "1", "yes", "on"}
        if self.type == self.Type.INT:
            return int(self.value)
        if self.type == self.Type.FLOAT:
            return float(self.value)
        return self.value


class TtlChange(models.Model):
    """An emergency shortening (or restoring) of the spans' time to live."""

    at = models.DateTimeField(auto_now_add=True)
    table = models.CharField(max_length=100)
    days = models.PositiveIntegerField()
    reason = models.CharField(max_length=500)
    changed_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.table}: {self.days} days"


class BackupRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        PRUNED = "pruned"

    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    database = models.CharField(max_length=100)
    location = models.CharField(max_length=1000)
    # {table: {"rows": n, "bytes": n, "checksum": "...", "deduplicated": true}}: what the
    # backup holds, measured on a restored copy after BACKUP finished (FINAL content).
    tables = models.JSONField(default=dict)
    # Views (materialized ones included) the backup holds: a restore recreates them too.
    views = models.JSONField(default=list, blank=True)
    rows = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    checksum = models.CharField(max_length=64, blank=True)
    progress = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"backup {self.pk} {self.status} {self.started_at:%Y-%m-%d %H:%M}"
