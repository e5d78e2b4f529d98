"""Why a sign-in or a two-step verification was refused: one exception per reason, each with its HTTP status
and the words the person in front of it reads (both languages)."""


from django.utils.translation import gettext_lazy as _

from wecom_integration import tenancy


class LoginRefused(Exception):
    """Why a sign-in (or a two-step verification) did not happen, in words for the person in front of it.

    ``reason`` is a stable machine name; ``title`` and ``message`` are lazy translations rendered in the
    active language; ``admin_message`` says what an administrator must change, when that is the fix.
    """

    reason = "refused"
    status = 403
    title = _("You cannot sign in with WeCom")
    message_text = _("Sign-in with WeCom was refused.")

    def __init__(self, *, tenant=None, admin_message="", detail=""):
        self.tenant = tenant
        self.admin_message = admin_message
        self.detail = detail
        super().__init__(self.reason, detail)

    @property
    def message(self):
        return self.message_text % {"tenant": tenancy.tenant_name(self.tenant) if self.tenant is not None else ""}

    def __str__(self):
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class InvalidState(LoginRefused):
    reason = "invalid_state"
    status = 400
    title = _("This sign-in link is no longer valid")
    message_text = _(
        "The sign-in link has expired, was already used, or was opened in another browser. "
        "Please start signing in again."
    )


class MissingCode(LoginRefused):
    reason = "missing_code"
    status = 400
    title = _("WeCom did not send a sign-in code")
    message_text = _("Open this page from WeCom, or start signing in again.")


class CodeReplayed(LoginRefused):
    reason = "code_replayed"
    status = 400
    title = _("This sign-in code was already used")
    message_text = _("Each WeCom sign-in can be used only once. Please start signing in again.")


class CodeInvalid(LoginRefused):
    reason = "code_invalid"
    status = 400
    title = _("WeCom did not accept the sign-in code")
    message_text = _("The code has expired or was already used. Please start signing in again.")


class LoginDisabled(LoginRefused):
    reason = "disabled"
    status = 404
    title = _("Sign-in with WeCom is not available")
    message_text = _("Sign-in with WeCom is not set up or is turned off for this organisation. Ask your administrator.")


class VerificationDisabled(LoginRefused):
    reason = "verification_disabled"
    status = 404
    title = _("Two-step verification is not turned on")
    message_text = _("%(tenant)s does not use two-step verification with this site. Ask your administrator.")


class NotMember(LoginRefused):
    reason = "not_member"
    title = _("You are not a member of this company in WeCom")
    message_text = _(
        "The account you used is not a member of %(tenant)s's WeCom company. Sign in with your work WeCom "
        "account, or ask your administrator to add you to the company."
    )


class NotBound(LoginRefused):
    reason = "not_bound"
    title = _("Your WeCom account is not linked to an account here")
    message_text = _(
        "Your WeCom account has no account in %(tenant)s yet. Ask your administrator to sync the WeCom "
        "contacts, then sign in again."
    )


class NoMembership(LoginRefused):
    reason = "no_membership"
    title = _("Your account has no access to this organisation")
    message_text = _("Your account is not a member of %(tenant)s. Ask your administrator to add you.")


class MembershipPending(LoginRefused):
    reason = "pending"
    title = _("Your account is waiting for approval")
    message_text = _(
        "An administrator of %(tenant)s must approve your membership before you can sign in. "
        "Try again once you have been approved."
    )


class AccountDeactivated(LoginRefused):
    reason = "deactivated"
    title = _("Your account is deactivated")
    message_text = _("Your account in %(tenant)s is deactivated. Ask your administrator if this is a mistake.")


class WrongAccount(LoginRefused):
    reason = "wrong_account"
    title = _("You are signed in with another account")
    message_text = _(
        "This WeCom member is linked to a different account in %(tenant)s. Sign in with that account to "
        "finish the verification."
    )


class WeComUnavailable(LoginRefused):
    reason = "wecom_error"
    status = 502
    title = _("WeCom sign-in failed")
    message_text = _(
        "WeCom refused the sign-in or did not answer. Try again in a moment; if it keeps failing, tell your "
        "administrator what is shown below."
    )
