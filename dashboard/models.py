"""Who may read which org in the dashboard, and with what rights."""

from django.conf import settings
from django.db import models

from ingestion.models import Org


class Role(models.TextChoices):
    # Ordered by rights: each has every right of the ones before it.
    VIEWER = "viewer", "viewer"
    MEMBER = "member", "member"
    ADMIN = "admin", "admin"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="memberships")
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "org"],
                                               name="one_membership_per_user_and_org")]
        ordering = ["org__slug"]

    def __str__(self) -> str:
        return f"{self.user} in {self.org.slug} ({self.role})"

    def allows(self, role: str) -> bool:
        """True when this membership has at least the rights of `role`."""
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]
