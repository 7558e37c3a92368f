from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from . import services
from .models import AuditEntry, AuditOutcome, TeamScope
from .thena.errors import ThenaError


class ReadOnlyAdmin(admin.ModelAdmin):
    """The audit log is insert-only: the admin may look, never add, change or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditOutcomeInline(admin.TabularInline):
    model = AuditOutcome
    fields = (
        "created_at",
        "outcome",
        "status_code",
        "message",
        "upstream_updated_at",
        "duration_ms",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "actor_username", "action", "ticket_identifier", "outcome")
    list_filter = ("action", "outcome")
    search_fields = ("actor_username", "ticket_identifier", "ticket_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    show_full_result_count = False  # no COUNT(*) over a million rows
    inlines = [AuditOutcomeInline]


class TeamScopeForm(forms.ModelForm):
    team_ids = forms.MultipleChoiceField(
        label="Teams",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The Thena teams this user may see. No teams ticked: none at all. "
        "Delete the scope to let the user see every team.",
    )

    class Meta:
        model = TeamScope
        fields = ("team_ids",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            teams = [(t["id"], t.get("name") or t["id"]) for t in services.team_list()]
        except ThenaError:
            teams = []
        current = self.instance.team_ids or []
        known = {team_id for team_id, _ in teams}
        # Keep teams Thena no longer lists (or cannot list right now) selectable.
        self.fields["team_ids"].choices = teams + [(t, t) for t in current if t not in known]


class TeamScopeInline(admin.StackedInline):
    model = TeamScope
    form = TeamScopeForm
    can_delete = True
    verbose_name = "team scope"
    verbose_name_plural = "Team scope (leave empty for every team)"


admin.site.unregister(User)


@admin.register(User)
class ScopedUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, TeamScopeInline]
    list_display = (*UserAdmin.list_display, "is_active", "last_login")


admin.site.site_header = "thena-admin administration"
admin.site.site_title = "thena-admin"
