"""A tenant admin's day in the admin, in a real browser, in both languages.

Log in; configure the tenant against the fake WeCom; test the connection; run a sync and watch it end;
fix a proposed match and confirm; see the bound users and unbind one; approve a pending member; send a
test message that the fake records; see a contact-change callback in the event log and the org chart;
push the app menu; answer a message in the inbox. Each screen is opened from the tenant's page, checked
for a label on every field, and photographed.

The English run takes its language from the browser (Accept-Language); the Chinese run starts from an
English browser and picks 简体中文 with the admin's language switch. Our own strings are located by
element, not by text, so the test does not depend on the catalogues; Django's own are asserted.
"""

import base64
import secrets

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tenants.models import Membership
from tests.factories import make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration.models import Binding, CallbackEvent, InboxMessage, MessageLog, SyncRun, WeComConfig

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-123456!"  # tests.factories' default

# Every visible field without a name a screen reader can announce (label, aria-label(ledby) or title).
UNLABELLED_FIELDS_JS = """
() => Array.from(document.querySelectorAll("input, select, textarea")).filter((el) => {
  if (["hidden", "submit", "button", "reset", "image"].includes(el.type)) return false;
  const style = getComputedStyle(el);
  if (style.display === "none" || style.visibility === "hidden") return false;
  if (!el.getClientRects().length) return false;
  if ((el.getAttribute("aria-label") || "").trim()) return false;
  const ids = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
  if (ids.some((id) => (document.getElementById(id)?.textContent || "").trim())) return false;
  const labels = Array.from(el.labels || []);
  if (labels.some((l) => l.textContent.trim() || l.querySelector("img[alt]:not([alt=''])"))) return false;
  if ((el.getAttribute("title") || "").trim()) return false;
  return true;
}).map((el) => el.outerHTML.split(">")[0].slice(0, 160) + ">")
"""


def aes_key():
    return base64.b64encode(secrets.token_bytes(32)).decode()[:-1]


def unique_named(org, count):
    """``count`` members whose names nobody else in the organisation has, in userid order."""
    names = {}
    for user in org.users.values():
        names[user.name] = names.get(user.name, 0) + 1
    return [u for u in sorted(org.users.values(), key=lambda u: u.userid) if names[u.name] == 1][:count]


class Journey:
    """The browser page plus what every screen gets: the language check, the label check and a photo."""

    def __init__(self, page, base_url, lang, shots):
        self.page = page
        self.base_url = base_url
        self.lang = lang
        self.shots = shots
        self.count = 0
        self.unlabelled = {}
        self.problems = []
        self.taken = []

    def url(self, path):
        return self.base_url + path

    def goto(self, path):
        self.page.goto(self.url(path))
        self.page.wait_for_load_state("load")

    def click(self, selector):
        """Click something that loads a page, and wait for it."""
        with self.page.expect_navigation():
            self.page.click(selector)
        self.page.wait_for_load_state("load")

    def screen(self, name, photo=True):
        """Checks for every screen: its language, a label on every field; then a screenshot."""
        page = self.page
        assert page.get_attribute("html", "lang") == self.lang, (name, page.url)
        missing = page.evaluate(UNLABELLED_FIELDS_JS)
        if missing:
            self.unlabelled[name] = missing[:3] + ([f"... and {len(missing) - 3} more"] if len(missing) > 3 else [])
        if photo:
            page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
            self.count += 1
            path = self.shots / f"{self.lang}-{self.count:02d}-{name}.png"
            page.screenshot(path=str(path))
            self.taken.append(path)

    def messages(self, level):
        return [text.strip() for text in self.page.locator(f"ul.messagelist li.{level}").all_inner_texts()]

    def tab_to(self, selector, limit=250):
        """Press Tab from the top of the page until ``selector`` has the focus; fails if it never does."""
        page = self.page
        page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"{selector} cannot be reached with the Tab key on {page.url}")


@pytest.fixture
def world(settings, make_fake_wecom):
    fake = make_fake_wecom(users=40, departments=6, seed=8)
    settings.WECOM = {"API_BASE": fake.api_base}
    tenant = make_tenant("acme", "示例科技 Acme")
    make_tenant_admin("boss", tenant)
    matched, renamed = unique_named(fake.org, 2)
    # An account whose name is the WeCom member's: the sync proposes to bind them.
    alice = make_user("alice", first_name=matched.name)
    make_member(alice, tenant)
    # An account with another name, not yet in the tenant: the admin binds it by hand on review.
    make_user("bob", first_name="Bob", last_name="Builder")
    return {"fake": fake, "tenant": tenant, "matched": matched, "renamed": renamed}


@pytest.mark.parametrize("lang", ["en", "zh-hans"])
def test_a_tenant_admins_journey(lang, world, live_server, open_browser, screenshots_dir, settings):
    fake, tenant = world["fake"], world["tenant"]
    matched, renamed = world["matched"], world["renamed"]
    page = open_browser("en-US")
    # The screenshots show the screen itself: the admin's navigation sidebar starts collapsed (a user's
    # choice Django keeps in localStorage).
    page.context.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    j = Journey(page, live_server.url, lang, screenshots_dir)
    tenant_path = f"/admin/tenants/tenant/{tenant.pk}/change/"

    # Sign in: the English browser gets English; the Chinese run picks Chinese with the switch first.
    j.goto("/admin/")
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text("#site-name")
    if lang != "en":
        page.select_option("#language-select", lang)
        j.click("#language-switch button[type=submit]")
    j.screen("sign-in")
    assert page.input_value("#language-select") == lang
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.press("#id_password", "Enter")  # the keyboard signs in
    assert page.locator("#user-tools").is_visible()
    assert (page.text_content("#logout-form button").strip() == "Log out") == (lang == "en")

    # The tenant's page, from the admin index: its dashboard says what to do first.
    j.click('#content-main a[href$="/admin/tenants/tenant/"]')
    j.click(f'#result_list a[href$="{tenant_path}"]')
    assert page.locator(".dash-note").is_visible()
    assert page.locator('[data-screen="send_test"].unavailable').count() == 1
    # The skip link is the first stop of the Tab key and takes the focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('skip-to-content-link')")
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "content-start"
    j.screen("tenant-before-setup")

    # Configure the tenant against the fake WeCom.
    j.click('a[data-screen="config"]')
    assert page.input_value("#id_tenant") == str(tenant.pk)
    keys = {
        "contact_token": secrets.token_hex(8), "contact_aes_key": aes_key(),
        "customer_token": secrets.token_hex(8), "customer_aes_key": aes_key(),
        "app_token": secrets.token_hex(8), "app_aes_key": aes_key(),
    }
    page.fill("#id_corp_id", fake.corp_id)
    page.fill("#id_agent_id", str(fake.agent_id))
    page.fill("#id_secret", fake.secret)
    page.fill("#id_contact_secret", fake.contact_secret)
    page.fill("#id_customer_secret", fake.customer_secret)
    for field, value in keys.items():
        page.fill(f"#id_{field}", value)
    j.screen("configuration-form", photo=False)
    j.click("input[name=_continue]")
    assert j.messages("success"), page.inner_text("#content")
    config = WeComConfig.objects.get(tenant=tenant)
    assert (config.corp_id, config.contact_token) == (fake.corp_id, keys["contact_token"])
    contacts_url = page.input_value("#callback-url-contacts")
    assert contacts_url == f"{live_server.url}/wecom/callback/{tenant.pk}/contacts/"
    copy = page.locator('button.wecom-copy[data-target="callback-url-contacts"]')
    before = copy.inner_text()
    copy.click()
    assert copy.inner_text() != before  # "Copied"
    # What the admin does next in WeCom: paste the URLs with the Token and EncodingAESKey.
    fake.register_callback(contacts_url, keys["contact_token"], keys["contact_aes_key"], kind="contacts")
    fake.register_callback(page.input_value("#callback-url-app"), keys["app_token"], keys["app_aes_key"], kind="app")
    j.screen("configuration")

    # Test connection: every secret works.
    j.click('a[href$="/test-connection/"]')
    j.click("#content-main form input[type=submit], #content form input[type=submit]")
    assert j.messages("success") and not j.messages("error")
    assert page.locator("table.wecom-test-results tr.ok").count() >= 1
    assert page.locator("table.wecom-test-results tr.error").count() == 0
    j.screen("test-connection")

    # Sync: two clicks from the tenant's page, the Sync button reached and pressed with the keyboard.
    j.goto(tenant_path)
    j.click('a[data-screen="syncs"]')
    j.screen("syncs", photo=False)
    j.tab_to('button[name="kind"][value="contacts"]')
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state("load")
    run = SyncRun.objects.get(tenant=tenant, kind=SyncRun.Kind.CONTACTS)
    assert page.url.endswith(f"/syncrun/{run.pk}/progress/")
    # Celery runs eagerly here, so the sync is over; the page shows its finished state.
    assert run.status == SyncRun.Status.REVIEW, run.errors
    page.wait_for_selector('#sync-bar[aria-valuenow="100"]')
    assert page.locator("#sync-review").is_visible()
    j.screen("sync-progress")

    # Review: the matched account is proposed; bind the other member to bob by hand, then confirm.
    j.click("#sync-review a")
    matched_row = page.locator("tr", has=page.locator(f'input[name^="wecom-"][value="{matched.userid}"]'))
    assert matched_row.locator('input[name^="username-"]').input_value() == "alice"
    assert matched_row.locator('select[name^="action-"]').input_value() == "bind"
    row = page.locator("tr", has=page.locator(f'input[name^="wecom-"][value="{renamed.userid}"]'))
    assert row.locator('select[name^="action-"]').input_value() == "create"
    # Typing asks the server for matching accounts; wait for the answer before going on.
    with page.expect_response(lambda response: "/review/search.json" in response.url):
        row.locator('input[name^="username-"]').fill("bob")
    row.locator('select[name^="action-"]').select_option("bind")
    j.screen("review")
    j.click("input[name=confirm]")
    assert j.messages("success"), j.messages("error")
    bob = get_user_model().objects.get(username="bob")
    assert Binding.objects.filter(tenant=tenant, user=bob, wecom_user__userid=renamed.userid).exists()
    assert Binding.objects.filter(tenant=tenant, user__username="alice", wecom_user__userid=matched.userid).exists()
    assert Membership.objects.get(tenant=tenant, user=bob).status == Membership.Status.PENDING

    # The bound users; unbind alice (the account stays).
    j.goto(tenant_path)
    j.click('a[data-screen="bound"]')
    result_rows = page.locator("#result_list tbody tr")
    assert result_rows.filter(has_text="alice").count() == 1
    assert result_rows.filter(has_text="bob").count() == 1
    j.screen("bound-users")
    result_rows.filter(has_text="alice").locator("input.action-select").check()
    page.select_option("select[name=action]", "remove_bindings")
    j.click("button[name=index]")
    assert j.messages("success")
    assert not Binding.objects.filter(tenant=tenant, user__username="alice").exists()
    assert get_user_model().objects.filter(username="alice").exists()
    assert page.locator("#result_list tbody tr").filter(has_text="alice").count() == 0

    # Pending approvals: approve bob.
    j.goto(tenant_path)
    j.click('a[data-screen="pending"]')
    pending_rows = page.locator("#result_list tbody tr")
    assert pending_rows.count() == 1 and "bob" in pending_rows.first.inner_text()
    j.screen("pending-approvals")
    pending_rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", "approve")
    j.click("button[name=index]")
    assert j.messages("success")
    assert Membership.objects.get(tenant=tenant, user=bob).status == Membership.Status.ACTIVE

    # Send a test message; the fake WeCom records it.
    j.goto(tenant_path)
    j.click('a[data-screen="send_test"]')
    text = f"Journey test message {lang} / 测试消息"
    page.select_option("#id_msgtype", "text")
    page.fill("#id_content", text)
    page.fill("#id_userids", renamed.userid)
    j.click("#content-main form input[type=submit].default")
    assert j.messages("success"), j.messages("error")
    delivered = [d for d in fake.deliveries_for(renamed.userid) if d["msgtype"] == "text"]
    assert [d["content"]["content"] for d in delivered] == [text]
    assert MessageLog.objects.filter(tenant=tenant, status=MessageLog.Status.SENT).count() == 1
    j.screen("send-test-message")

    # The message log shows it.
    j.goto(tenant_path)
    j.click('a[data-screen="messages"]')
    assert page.locator("#result_list tbody tr").count() == 1
    j.screen("message-log")

    # A member joins in WeCom: the contact-change callback reaches us, and shows in the event log and
    # in the org chart's head counts.
    j.goto(tenant_path)
    j.click('a[data-screen="org_chart"]')
    root = page.locator("#org-chart > ul > li > details > summary .count").first
    before_total = int(root.inner_text().split("/")[-1])
    j.goto(tenant_path)
    results = fake.add_user("journey-newcomer", "新同事", department=(1,))
    assert [r.ok for r in results] == [True], [r.as_dict() for r in results]
    event = CallbackEvent.objects.get(tenant=tenant, change_type="create_user")
    assert event.status == CallbackEvent.Status.HANDLED, event.error
    j.click('a[data-screen="events"]')
    row = page.locator("#result_list tbody tr").filter(has_text="create_user")
    assert row.count() == 1
    j.screen("event-log")
    j.goto(tenant_path)
    j.click('a[data-screen="org_chart"]')
    root = page.locator("#org-chart > ul > li > details > summary .count").first
    assert int(root.inner_text().split("/")[-1]) == before_total + 1
    page.click('button[data-org="open"]')
    assert page.locator("#org-chart details:not([open])").count() == 0
    j.screen("org-chart")
    page.click('button[data-org="close"]')
    assert page.locator("#org-chart details[open]").count() == 0

    # The app menu: push the example to WeCom and read it back.
    j.goto(tenant_path)
    j.click('a[data-screen="menu"]')
    j.click('button[name=action][value=push]')
    assert j.messages("success"), j.messages("error")
    assert fake.menus.get(fake.agent_id, {}).get("button")
    assert page.locator("#wecom-menu-remote").is_visible()
    j.screen("app-menu")

    # The dashboard: bound, pending, the callbacks of the last hours.
    j.goto(tenant_path)
    assert page.locator("#dash-bound .dash-figure").inner_text().strip() == str(
        Binding.objects.filter(tenant=tenant, is_active=True).count()
    )
    assert page.locator("#dash-pending .dash-figure").inner_text().strip() == "0"
    bars = page.locator("#dash-callbacks g.dash-hour")
    assert bars.count() == 24
    assert sum(int(bar.get_attribute("data-total")) for bar in bars.all()) >= 1
    j.screen("dashboard")

    # An employee writes to the app; the admin answers from the inbox.
    question = "请问明天几点开会？"
    results = fake.send_app_message(renamed.userid, question)
    assert [r.ok for r in results] == [True], [r.as_dict() for r in results]
    assert InboxMessage.objects.filter(tenant=tenant, wecom_userid=renamed.userid, direction="in").exists()
    j.goto(tenant_path)
    j.click('a[data-screen="inbox"]')
    j.screen("inbox")
    j.click(f'#result_list a[href*="/conversations/{tenant.pk}/{renamed.userid}/"]')
    assert question in page.inner_text("#content-main")
    j.screen("conversation", photo=False)
    if page.locator('#content a[href*="/messagelog/reply/"]').count():
        j.click('#content a[href*="/messagelog/reply/"]')
    else:
        j.problems.append("conversation: no link to the reply page (admin:wecom_integration_messagelog_inbox_reply)")
        j.goto(reverse("admin:wecom_integration_messagelog_inbox_reply", args=[tenant.pk, renamed.userid]))
    answer = "十点，在三楼会议室。"
    page.fill("textarea[name=text]", answer)
    j.click("#content-main form input[type=submit].default")
    assert j.messages("success"), j.messages("error")
    assert answer in [d["content"].get("content") for d in fake.deliveries_for(renamed.userid)]
    j.screen("inbox-reply")

    # Approvals (issue 17): submit a leave request for a member from the admin, the approver approves it in
    # the WeCom app (the fake's screen), and the timeline shows the decision the callback brought.
    import requests

    from wecom_integration.models import Approval
    from wecom_integration.testing.fake.approval import LEAVE_TEMPLATE_ID

    query = (f"?tenant={tenant.pk}&template_id={LEAVE_TEMPLATE_ID}&creator={matched.userid}"
             f"&approvers={renamed.userid}&approver_attr=1")
    j.goto(reverse("admin:wecom_integration_approval_submit") + query)
    page.fill('input[name="c_Text-1"]', "拜访客户 Client visit")
    page.fill('input[name="c_Number-1"]', "2")
    j.click("#content-main form input[type=submit].default")
    assert j.messages("success"), page.inner_text("#content-main")
    approval = Approval.objects.get(tenant=tenant, applicant=matched.userid)
    answer = requests.post(f"{fake.api_base}/fake/app/approvals/{approval.sp_no}",
                           data={"action": "approve", "userid": renamed.userid, "speech": "同意 OK"}, timeout=20)
    assert answer.status_code == 200
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED
    j.goto(reverse("admin:wecom_integration_approval_changelist"))
    assert approval.sp_no in page.inner_text("#result_list")
    j.screen("approvals")
    j.goto(reverse("admin:wecom_integration_approval_change", args=[approval.pk]))
    assert "同意 OK" in page.inner_text(".wecom-timeline")
    j.screen("approval-timeline")

    # Tags (issue 18): contact tags read from WeCom and one changed from the admin; the customer tag library.
    from wecom_integration.customers import sync as customer_sync
    from wecom_integration.directory import sync as contact_sync
    from wecom_integration.models import ContactTag, CustomerGroup, CustomerTag, ExternalContact

    tagid = fake.create_contact_tag("销售部 Sales", [matched.userid])
    j.goto(reverse("admin:wecom_integration_contacttag_changelist"))
    j.click('#content-main .object-tools a[href$="/contacttag/sync/"]')
    page.select_option("#id_tenant", str(tenant.pk))
    j.click("#content-main form input[type=submit]")
    assert j.messages("success"), page.inner_text("#content-main")
    tag = ContactTag.objects.get(tenant=tenant, tagid=tagid)
    j.click(f'#result_list a[href*="/contacttag/{tag.pk}/change/"]')
    page.fill("#id_add_users", renamed.userid)
    j.click('#contacttag_form input[name="_continue"]')
    assert j.messages("success"), page.inner_text("#content-main")
    assert list(fake.contact_tags[tagid].users) == [matched.userid, renamed.userid]
    j.screen("contact-tag")
    # The customers: the sync brings the corp's tag library, each relation's tags and the customer groups.
    customer = next(c for c in fake.org.external_contacts.values() if c.followers)
    owner = customer.followers[0].user.userid
    fake.create_group_chat(owner, "VIP 客户群 VIP customers", [customer.external_userid], push=False)
    run = customer_sync.execute_customer_run(contact_sync.create_run(tenant, SyncRun.Kind.CUSTOMERS, None).pk)
    assert run.status == SyncRun.Status.SUCCEEDED, run.errors
    j.goto(reverse("admin:wecom_integration_customertag_changelist"))
    assert CustomerTag.objects.filter(tenant=tenant).count() == len(fake.org.tags)
    j.screen("customer-tags")
    mirrored = ExternalContact.objects.get(tenant=tenant, external_userid=customer.external_userid)
    j.goto(reverse("admin:wecom_integration_externalcontact_change", args=[mirrored.pk]))
    j.click('#content-main a[href*="/tags/"]')
    first_two = list(CustomerTag.objects.filter(tenant=tenant).values_list("tag_id", flat=True)[:2])
    for box in page.locator('input[name="tags"]').all():
        box.set_checked(box.get_attribute("value") in first_two)
    j.screen("customer-tags-mark")
    j.click("#content-main form input[type=submit]")
    assert j.messages("success"), page.inner_text("#content-main")
    group = CustomerGroup.objects.get(tenant=tenant, name="VIP 客户群 VIP customers")
    j.goto(reverse("admin:wecom_integration_customergroup_change", args=[group.pk]))
    j.screen("customer-group")
    # The chat sidebar, opened from the fake WeCom client's chat toolbar with its stand-in JS-SDK.
    settings.WECOM = {**settings.WECOM, "JSSDK_SCRIPTS": [f"{fake.api_base}/fake/jssdk/standin.js"]}
    fake.set_toolbar_page(j.url(f"/wecom/sidebar/{tenant.pk}/"), featured=[customer.external_userid])
    page.goto(f"{fake.api_base}/fake/app/toolbar")
    j.click("a:has-text('Open the sidebar')")
    page.wait_for_selector("#sidebar-customer")
    assert page.locator("#sidebar-follows .tag").count() == 2, page.inner_text("#sidebar-panel")
    assert "VIP 客户群" in page.inner_text("#sidebar-groups")
    j.screen("sidebar")

    for screen, fields in j.unlabelled.items():
        j.problems.append(f"{screen}: fields without a label: {fields}")
    assert not j.problems, "\n".join(j.problems)
    assert all(path.stat().st_size > 10_000 for path in j.taken)
