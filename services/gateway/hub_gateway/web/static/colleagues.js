// Colleagues: the firm's people, inviting one, removing one who left, and the invitations
// nobody accepted yet, which owners and admins may withdraw. A removal ends the person's
// sessions and API tokens at once; the list is read again after each change, without the
// person removed even if the read model has not caught up yet.
"use strict";

Hub.start(() => {
  const { api, h, _, ngettext } = Hub;
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const $ = (id) => document.getElementById(id);
  const roles = { owner: _("owner"), admin: _("admin"), staff: _("staff") };
  const removed = new Set();

  function say(id, message) {
    $(id).textContent = message;
    $(id).hidden = !message;
  }

  // Owners remove anyone but themselves; admins anyone but themselves and owners.
  function removable(person) {
    if (!boot.manages || person.accountant_id === boot.me) return false;
    return person.role !== "owner" || boot.role === "owner";
  }

  // Whatever their directory calls them (maybe nothing), else their address.
  const nameOf = (person) => person.display_name || person.email;

  const loadPeople = Hub.serialReads(async () => {
    try {
      const { data } = await api("GET", "/api/v1/accountants");
      const people = data.filter((person) => !removed.has(person.accountant_id));
      $("people-body").replaceChildren(...people.map((person) => h("tr", {},
        // <bdi>: a name written right to left (or holding direction marks) cannot reorder "(you)".
        h("td", {}, h("bdi", {}, nameOf(person)), person.accountant_id === boot.me ? h("span", { class: "muted" }, " ", _("(you)")) : null),
        h("td", {}, person.email),
        h("td", {}, roles[person.role] || person.role),
        h("td", {}, removable(person)
          ? h("button", { type: "button", class: "secondary", "aria-label": _("Remove %(name)s from the firm", { name: nameOf(person) }), onclick: (event) => remove(person, event.currentTarget) }, _("Remove"))
          : null))));
      say("colleagues-error", "");
    } catch (error) {
      $("people-body").replaceChildren(h("tr", {}, h("td", { colspan: 4 }, _("The list could not be read."))));
      say("colleagues-error", error.message);
    }
  });

  function invitationStatus(invitation) {
    return invitation.expired
      ? h("span", { class: "state state-failed" }, _("Expired %(when)s", { when: Hub.dateTime(invitation.expires_at) }))
      : _("Can join until %(when)s", { when: Hub.dateTime(invitation.expires_at) });
  }

  // The registry's own list (not the read model): only owners and admins have it.
  const loadInvitations = Hub.serialReads(async () => {
    if (!boot.manages) return;
    try {
      const { data } = await api("GET", "/api/v1/accountants/invitations");
      $("pending-body").replaceChildren(...(data.length ? data.map((invitation) => h("tr", {},
        h("td", {}, invitation.email),
        h("td", {}, roles[invitation.role] || invitation.role),
        h("td", {}, h("bdi", {}, invitation.invited_by_name)),
        h("td", { title: invitation.mailed_at }, Hub.dateTime(invitation.mailed_at)),
        h("td", {}, invitationStatus(invitation)),
        h("td", {}, h("button", { type: "button", class: "secondary", "aria-label": _("Withdraw the invitation of %(email)s", { email: invitation.email }), onclick: (event) => withdraw(invitation, event.currentTarget) }, _("Withdraw")))))
        : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, _("No invitation is waiting.")))]));
    } catch (error) {
      $("pending-body").replaceChildren(h("tr", {}, h("td", { colspan: 6 }, _("The list could not be read."))));
      say("colleagues-error", error.message);
    }
  });

  async function withdraw(invitation, button) {
    if (!confirm(_("Withdraw the invitation of %(email)s? They can no longer join the firm through it; a mail already sent still arrives.", { email: invitation.email }))) return;
    button.disabled = true;
    try {
      const { data } = await api("DELETE", `/api/v1/accountants/invitations/${invitation.invitation_id}`);
      say("colleagues-error", "");
      say("colleagues-done", _("The invitation of %(email)s was withdrawn.", { email: data.email }));
    } catch (error) {
      say("colleagues-done", "");
      say("colleagues-error", error.message);
    }
    await loadInvitations();
  }

  async function remove(person, button) {
    const question = _("Remove %(name)s (%(email)s) from the firm? Their sessions and API tokens stop working at once, their alert rules are removed and their clients are assigned to nobody. Only a new invitation brings them back.", { name: nameOf(person), email: person.email });
    if (!confirm(question)) return;
    // One removal at a time: a second click would only be told the person is gone.
    button.disabled = true;
    try {
      const { data } = await api("DELETE", `/api/v1/accountants/${person.accountant_id}`);
      removed.add(person.accountant_id);
      say("colleagues-error", "");
      const rules = ngettext("%(count)s alert rule removed", "%(count)s alert rules removed", data.alert_rules_removed);
      const clients = ngettext("%(count)s client unassigned", "%(count)s clients unassigned", data.clients_unassigned);
      say("colleagues-done", _("%(email)s was removed from the firm: %(rules)s, %(clients)s.", { email: data.email, rules, clients }));
    } catch (error) {
      say("colleagues-done", "");
      say("colleagues-error", error.message);
    }
    await loadPeople();
  }

  $("invite-form")?.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("invite-send").disabled = true;
    try {
      const { status, data } = await api("POST", "/api/v1/accountants/invitations", { email: $("invite-email").value.trim(), role: $("invite-role").value });
      say("colleagues-error", "");
      // Not mailed again (200): the hub's own sentence says why, in the page's language.
      say("colleagues-done", status === 202 ? _("Invitation mailed to %(email)s.", { email: data.email }) : data.message);
      $("invite-form").reset();
    } catch (error) {
      say("colleagues-done", "");
      say("colleagues-error", error.message);
    } finally {
      $("invite-send").disabled = false;
    }
    await loadInvitations();
  });

  loadPeople();
  loadInvitations();
});
