"""A host's own organisations and memberships (issue 24): not the ``tenants`` app's models."""

from django.conf import settings
from django.db import models


class Organization(models.Model):
    title = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)

    class Meta:
        ordering = ["title"]

    def __str__(self):
        return self.title


class Seat(models.Model):
    """The host's membership: a user holds a seat in an organisation; managers administer it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="seats")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="seats")
    manager = models.BooleanField(default=False)
    # The host's own words for the states: "on" (active), "waiting" (to be approved), "gone".
    state = models.CharField(max_length=8, default="on")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="orghost_one_seat")]

    def __str__(self):
        return f"{self.user_id} @ {self.organization_id}"
