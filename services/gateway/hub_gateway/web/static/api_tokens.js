// Personal API tokens: yours, when each was last used (a leaked one in use shows here), a
// new one (its value shown once, only here) and revoking one.
"use strict";

Hub.start(() => {
  const { api, h, _ } = Hub;
  const $ = (id) => document.getElementById(id);

  function say(id, ...content) {
    $(id).replaceChildren(...content);
    $(id).hidden = content.length === 0;
  }

  const expired = (token) => token.expires_at !== null && new Date(token.expires_at) <= new Date();
  function stateOf(token) {
    if (token.revoked_at) return _("Revoked %(when)s", { when: Hub.dateTime(token.revoked_at) });
    if (expired(token)) return _("Expired %(when)s", { when: Hub.dateTime(token.expires_at) });
    return token.expires_at ? _("Works until %(when)s", { when: Hub.dateTime(token.expires_at) }) : _("Works until revoked");
  }

  const loadTokens = Hub.serialReads(async () => {
    try {
      const { data } = await api("GET", "/api/v1/tokens");
      $("tokens-body").replaceChildren(...(data.length ? data.map((token) => h("tr", {},
        h("td", {}, token.name),
        h("td", { title: token.created_at }, Hub.dateTime(token.created_at)),
        h("td", { title: token.last_used_at || "" }, token.last_used_at ? Hub.dateTime(token.last_used_at) : h("span", { class: "muted" }, _("never"))),
        h("td", {}, stateOf(token)),
        h("td", {}, token.revoked_at || expired(token) ? null
          : h("button", { type: "button", class: "secondary", "aria-label": _("Revoke token %(name)s", { name: token.name }), onclick: (event) => revoke(token, event.currentTarget) }, _("Revoke")))))
        : [h("tr", {}, h("td", { colspan: 5 }, _("No tokens yet.")))]));
      say("tokens-error");
    } catch (error) {
      $("tokens-body").replaceChildren(h("tr", {}, h("td", { colspan: 5 }, _("The list could not be read."))));
      say("tokens-error", error.message);
    }
  });

  async function revoke(token, button) {
    if (!confirm(_("Revoke the token %(name)s? Whatever uses it stops working at once.", { name: token.name }))) return;
    button.disabled = true;
    try {
      await api("DELETE", `/api/v1/tokens/${token.id}`);
      say("tokens-error");
    } catch (error) {
      say("tokens-error", error.message);
    }
    await loadTokens();
  }

  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("token-create").disabled = true;
    try {
      const days = $("token-lifetime").value;
      const { data } = await api("POST", "/api/v1/tokens", { name: $("token-name").value.trim(), expires_in_days: days ? Number(days) : null });
      say("tokens-error");
      say("tokens-new", _("The token %(name)s, shown only now: copy it where your script keeps secrets.", { name: data.name }), " ",
        h("code", { id: "new-token" }, data.token));
      // Focus on it (the region is not read out by itself: the secret is not spoken aloud).
      $("tokens-new").focus();
      $("token-form").reset();
    } catch (error) {
      say("tokens-error", error.message);
    } finally {
      $("token-create").disabled = false;
    }
    await loadTokens();
  });

  loadTokens();
});
