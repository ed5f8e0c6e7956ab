// Manage Clients: the client card (New / Edit / Remove) and Test Client URL in place.
"use strict";

Hub.start(() => {
  const { api, h, _, ngettext } = Hub;
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const client = boot.client;
  const $ = (id) => document.getElementById(id);
  // How long a fetcher may work on a test (HUB_REFRESH_DEADLINE_SECONDS' default).
  const TEST_DEADLINE_MS = 15 * 60 * 1000;
  const FIELDS = ["name", "client_url", "contact_name", "email", "phone", "assigned_accountant_id", "tax_account_numbers", "cash_account_numbers", "time_zone", "notes"];

  $("assigned_accountant_id").replaceChildren(h("option", { value: "" }, _("Nobody")),
    ...boot.accountants.map((a) => h("option", { value: a.accountant_id }, a.display_name ? `${a.display_name} (${a.email})` : a.email)));
  $("time-zones").replaceChildren(...Hub.timeZoneOptions());
  if (client) {
    const card = client.card;
    for (const field of FIELDS) {
      const value = card[field];
      $(field).value = Array.isArray(value) ? value.join(", ") : value || "";
    }
  } else {
    // A new client is most likely where the accountant is (empty means UTC).
    $("time_zone").value = Hub.placeTimeZoneHere();
  }

  // Per company: whether Business Central notifies the hub of its changes, and since when.
  function showChangeNotifications() {
    const list = $("change-notifications");
    if (!list || !client) return;
    const companies = client.change_notifications || [];
    if (!companies.length) {
      list.replaceChildren(h("li", {}, _("No company read yet.")));
      return;
    }
    list.replaceChildren(...companies.map((company) => {
      let text;
      let css = "";
      const lapsed = company.state === "subscribed" && company.expires_at && new Date(company.expires_at) < new Date();
      if (lapsed) {
        text = _("The subscription lapsed on %(time)s; the next refresh subscribes again.", { time: Hub.dateTime(company.expires_at) });
        css = "notice-warning";
      } else if (company.state === "subscribed") {
        text = _("Business Central notifies the hub of changes (subscribed until %(time)s).", { time: Hub.dateTime(company.expires_at) });
        css = "notice-ok";
      } else if (company.state === "polling") {
        text = _("Read on schedule: the environment's change subscriptions are used up.");
        css = "notice-warning";
      } else if (company.state === "failed") {
        text = _("Subscribing to changes failed; the company is read on schedule and the next refresh tries again.");
        css = "notice-error";
      } else {
        text = _("Not subscribed to changes yet.");
      }
      const item = h("li", { class: css, "data-company-id": company.company_id, "data-state": lapsed ? "lapsed" : company.state || "none" },
        h("strong", {}, company.company_name), " — ", text);
      if (company.last_change_at) {
        item.append(" ", _("Last change notice: %(time)s.", { time: Hub.dateTime(company.last_change_at) }));
      }
      if (company.failure || company.detail) {
        const more = h("details", {}, h("summary", {}, _("Technical details")));
        if (company.detail) more.append(h("p", {}, company.detail));
        if (company.failure) more.append(Hub.technicalDetails(company.failure));
        item.append(more);
      }
      return item;
    }));
  }
  showChangeNotifications();

  // Everything an earlier save or test said goes before the next outcome shows: a message
  // left on a field would sit next to "Saved.", and "Saved." next to a new refusal.
  function clearErrors() {
    for (const field of FIELDS) {
      $(`${field}-error`).textContent = "";
      $(field).removeAttribute("aria-invalid");
      $(field).removeAttribute("aria-errormessage");
    }
    $("card-error").textContent = "";
    $("card-error").hidden = true;
    $("card-saved").textContent = "";
    $("card-saved").hidden = true;
  }
  function markField(field, message) {
    $(`${field}-error`).textContent = message;
    $(field).setAttribute("aria-invalid", "true");
    $(field).setAttribute("aria-errormessage", `${field}-error`);
  }
  function fieldError(field, message) {
    const known = FIELDS.includes(field) ? field : null;
    if (known) {
      markField(known, message);
      $(known).focus();
    } else {
      $("card-error").textContent = message;
      $("card-error").hidden = false;
    }
  }
  // A refused save, each problem on the field it is about. A 422 lists the problems with
  // where they are: ["body", "cash_account_numbers", 1] is an entry of the cash accounts,
  // so the field is the part after "body" and the message needs no place named (it shows
  // under the field). A refused command names its field; anything else is the banner's.
  function showRefusal(error) {
    const detail = error.body && error.body.detail;
    if (!Array.isArray(detail) || !detail.length) {
      fieldError(error.field, error.message);
      return;
    }
    const fieldOf = (problem) => (Array.isArray(problem.loc) && problem.loc[0] === "body" && FIELDS.includes(problem.loc[1]) ? problem.loc[1] : null);
    const placed = detail.filter((problem) => fieldOf(problem));
    const elsewhere = detail.filter((problem) => !fieldOf(problem));
    // Backwards, so that a field's first problem is the one it shows.
    for (const problem of placed.slice().reverse()) markField(fieldOf(problem), String(problem.msg));
    if (elsewhere.length) {
      $("card-error").textContent = elsewhere.map((problem) => {
        const where = (problem.loc || []).filter((part) => part !== "body").join(" → ");
        return (where ? where + ": " : "") + problem.msg;
      }).join(" ");
      $("card-error").hidden = false;
    }
    if (placed.length) $(fieldOf(placed[0])).focus();
  }

  function cardBody() {
    const text = (id) => $(id).value.trim() || null;
    const numbers = (id) => $(id).value.split(",").map((part) => part.trim()).filter(Boolean);
    const taxes = numbers("tax_account_numbers");
    const cash = numbers("cash_account_numbers");
    return {
      name: $("name").value.trim(),
      client_url: $("client_url").value.trim(),
      contact_name: text("contact_name"),
      email: text("email"),
      phone: text("phone"),
      notes: $("notes").value.trim() || null,
      assigned_accountant_id: $("assigned_accountant_id").value || null,
      tax_account_numbers: taxes.length ? taxes : null,
      cash_account_numbers: cash.length ? cash : null,
      time_zone: text("time_zone"),
    };
  }

  // ------------------------------------------------------------------ Test Client URL

  // The company a Client URL's ?company= names (any case of the key), or "".
  function companyInUrl(url) {
    try {
      const params = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `https://${url}`).searchParams;
      for (const [key, value] of params) if (key.toLowerCase() === "company") return value.trim();
    } catch (error) {
      // Not a URL the browser reads: the hub's own answer says what is wrong with it.
    }
    return "";
  }

  function showTest(answer, url) {
    const place = $("test-result");
    if (answer.status === "ok") {
      // One company a line: names hold commas and end in periods ("CRONUS USA, Inc.").
      const names = answer.companies.map((c) => c.display_name || c.name);
      // ?company= picks nothing (the hub reads every company it may): say so when it names
      // none of those found, a typo or a company the hub's account cannot see.
      const named = companyInUrl(url);
      const unknown = named && !answer.companies.some((c) => [c.name, c.display_name].some((n) => (n || "").toLowerCase() === named.toLowerCase()));
      // Listing companies needs no permission in them; reading their books does.
      const refused = answer.companies.filter((c) => c.readable === false);
      const refusal = answer.unreadable_failure || {};
      place.replaceChildren(h("div", { class: refused.length ? "result failed" : "result ok" },
        h("strong", {}, refused.length
          ? ngettext("The hub finds this client, but Business Central refuses it %(count)s company:", "The hub finds this client, but Business Central refuses it %(count)s companies:", refused.length)
          : _("The hub can read this client."), " "),
        refused.length ? h("ul", { class: "found-companies" }, refused.map((c) => h("li", {}, c.display_name || c.name))) : null,
        refused.length ? h("p", {}, Hub.failureText(refusal.fix)) : null,
        refused.length ? h("details", {}, h("summary", {}, _("Technical details")), Hub.technicalDetails(refusal)) : null,
        answer.latency_ms !== null && answer.latency_ms !== undefined ? _("Answered in %(ms)s ms.", { ms: Hub.count(answer.latency_ms) }) + " " : "",
        names.length ? ngettext("%(count)s company found:", "%(count)s companies found:", names.length) : _("No companies found."),
        names.length ? h("ul", { class: "found-companies" }, names.map((name) => h("li", {}, name))) : null,
        unknown ? h("p", { class: "notice-warning" }, _("The Client URL names the company %(company)s, which is not among them: check its spelling, or whether the hub's account may see it.", { company: named })) : null));
    } else if (answer.status === "pending") {
      place.replaceChildren(h("div", { class: "result pending" }, _("Still testing: Business Central is slow to answer…")));
    } else {
      const failure = answer.failure || {};
      // A card not saved yet has no Connect link to send: the URL named a tenant that
      // exists, and saving the card is the next step.
      const fix = failure.kind === "access_not_granted" && !client
        ? _("The tenant exists. Save the card: it then shows the Connect link to send the client (or ask them to run Invite External Accountant for you).")
        : Hub.failureText(failure.fix);
      place.replaceChildren(h("div", { class: "result failed" },
        h("strong", {}, Hub.failureText(failure.summary) || _("The test failed.")), " ", fix,
        failure.kind === "invalid_url" ? null : h("details", {}, h("summary", {}, _("Technical details")), Hub.technicalDetails(failure))));
    }
  }

  $("test-url").addEventListener("click", async () => {
    clearErrors();
    const url = $("client_url").value.trim();
    if (!url) { fieldError("client_url", _("Paste the client's Business Central URL first.")); return; }
    const button = $("test-url");
    button.disabled = true;
    button.textContent = _("Testing…");
    $("test-result").replaceChildren(h("div", { class: "result pending" }, _("Testing the connection to the client's Business Central…")));
    try {
      let { data } = await api("POST", "/api/v1/connection-tests", { client_url: url, client_id: client ? client.client_id : null });
      showTest(data, url);
      // As long as a fetcher may work on it (the refresh deadline), polled less often after
      // the first minute; then the answer, when it comes, is in Check Errors' history.
      const started = Date.now();
      // The POST answers 202 while the test runs, each later GET 200 with its status.
      while (data.status === "pending" && Date.now() - started < TEST_DEADLINE_MS) {
        await new Promise((resolve) => setTimeout(resolve, Date.now() - started < 60000 ? 1500 : 10000));
        ({ data } = await api("GET", `/api/v1/connection-tests/${data.test_id}`));
        showTest(data, url);
      }
      if (data.status === "pending") {
        $("test-result").replaceChildren(h("div", { class: "result failed" }, _("No answer from the client's Business Central in 15 minutes. Test again later; a failure that comes meanwhile shows in Tools → Check Errors.")));
      }
    } catch (error) {
      if (error.status === 422 && error.field === "client_url") {
        showTest({ status: "failed", failure: { kind: "invalid_url", summary: _("The Client URL is not valid."), fix: error.message } });
      } else {
        $("test-result").replaceChildren(h("div", { class: "result failed" }, error.message));
      }
    } finally {
      button.disabled = false;
      button.textContent = _("Test Client URL");
    }
  });

  // ------------------------------------------------------------------ save and remove

  // The save this page last read of the card: a save made on a card someone else saved
  // since is refused, rather than undoing their change.
  let cardVersion = client ? client.card_version : null;

  // The card_version of this page's own save (revision ``saved``), once the dashboard has it.
  // A newer revision is someone else's save made since: the version read before is kept,
  // so this page's next save is refused (412) rather than undo theirs unseen.
  async function waitForOwnSave(clientId, sent, saved) {
    const deadline = Date.now() + 8000;
    while (Date.now() < deadline) {
      const { data } = await api("GET", "/api/v1/clients");
      const listed = data.clients.find((c) => c.client_id === clientId);
      if (saved == null) {
        // A registry of the release before answers no revision (during an upgrade): any newer.
        if (listed && listed.card_version !== sent) return listed.card_version;
      } else if (listed && listed.card_revision === saved) {
        return listed.card_version;
      } else if (listed && listed.card_revision > saved) {
        return sent;
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    return sent;
  }

  async function waitUntilListed(clientId, present) {
    const deadline = Date.now() + 8000;
    while (Date.now() < deadline) {
      const { data } = await api("GET", "/api/v1/clients");
      if (data.clients.some((c) => c.client_id === clientId) === present) return;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  $("card").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const body = cardBody();
    if (!body.name) { fieldError("name", _("Give the client a name.")); return; }
    if (!body.client_url) { fieldError("client_url", _("Paste the client's Business Central URL.")); return; }
    $("save").disabled = true;
    try {
      const { data } = client
        ? await api("PUT", `/api/v1/clients/${client.client_id}`, body, { "If-Match": `"${cardVersion}"` })
        : await api("POST", "/api/v1/clients", body);
      if (client) cardVersion = await waitForOwnSave(client.client_id, cardVersion, data.card_revision);
      const waiting = !client && data.access_granted === false;
      $("card-saved").textContent = waiting
        ? _("Saved. The client has not given your firm access yet: send them the Connect link from the card.")
        : _("Saved. The client's companies appear on the dashboard as soon as they are read.");
      $("card-saved").hidden = false;
      if (!client) {
        await waitUntilListed(data.client_id, true);
        // A client waiting for permission opens on its card, where the Connect link is.
        window.location.assign(waiting ? `/clients/${data.client_id}` : "/clients");
      }
    } catch (error) {
      showRefusal(error);
    } finally {
      $("save").disabled = false;
    }
  });

  // ------------------------------------------------------------------ access (trust model)

  function bindAccess() {
    $("connect-link")?.addEventListener("click", async () => {
      const result = $("connect-result");
      try {
        const { data } = await api("POST", `/api/v1/clients/${client.client_id}/connect-link`);
        const field = h("input", { id: "connect-url", readonly: "", value: data.url, "aria-label": _("Connect link") });
        const copy = h("button", { type: "button", class: "secondary" }, _("Copy"));
        copy.addEventListener("click", async () => {
          field.select();
          try { await navigator.clipboard.writeText(data.url); copy.textContent = _("Copied"); } catch { /* selected for Ctrl+C */ }
        });
        result.replaceChildren(field, copy, h("div", { class: "hint" }, _("Valid until %(time)s.", { time: Hub.dateTime(data.expires_at) })));
        field.focus();
        field.select();
      } catch (error) {
        result.replaceChildren(h("div", { class: "field-error" }, error.message));
      }
    });

    $("remove-access")?.addEventListener("click", async () => {
      if (!confirm(_("Stop reading %(name)s's Business Central? The client must connect again to restore it.", { name: client.name }))) return;
      try {
        await api("DELETE", `/api/v1/clients/${client.client_id}/access`);
        $("access-state").textContent = _("Access removed. Refreshes of this client stop now.");
        $("remove-access").remove();
      } catch (error) {
        fieldError(null, error.message);
      }
    });
  }
  bindAccess();

  // While the card is open, the client may allow the firm (or withdraw): the access section
  // and the change notifications follow by themselves, drawn again from the card as the
  // server renders it now. The form is left alone, so nothing being typed is lost.
  // Serial reads: a change noticed while one is on its way reads once more after it, also
  // when that one fails (the hub unreachable, a page cut short).
  const followClient = Hub.serialReads(async () => {
    const response = await fetch(`/clients/${client.client_id}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const section = fresh.querySelector(".client-access");
    const shown = document.querySelector(".client-access");
    if (section && shown && section.dataset.accessState !== shown.dataset.accessState) {
      shown.replaceWith(document.importNode(section, true));
      bindAccess();
    }
    const boot = fresh.getElementById("boot");
    const freshClient = boot ? JSON.parse(boot.textContent).client : null;
    if (freshClient) {
      client.change_notifications = freshClient.change_notifications;
      showChangeNotifications();
    }
  });
  if (client) {
    Hub.live({
      resync: followClient,
      rows: (message) => { if (message.client_ids.includes(client.client_id)) followClient(); },
    });
  }

  $("remove")?.addEventListener("click", async () => {
    if (!confirm(_("Remove %(name)s from the hub? Its rows leave the dashboard; the client's Business Central is not touched.", { name: client.name }))) return;
    try {
      await api("DELETE", `/api/v1/clients/${client.client_id}`);
      await waitUntilListed(client.client_id, false);
      window.location.assign("/clients");
    } catch (error) {
      fieldError(null, error.message);
    }
  });
});
