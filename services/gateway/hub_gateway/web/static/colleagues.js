// Colleagues: the firm's people, inviting one, and removing one who left (owners and admins).
// A removal ends the person's sessions and API tokens at once; the list is read again after
// each change, without the person removed even if the read model has not caught up yet.
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
  });

  loadPeople();
});
