// Alerts: the current alerts of the firm's rules, the rules you may manage, and a new rule.
// A new rule with a webhook, a rule given a new webhook URL, or a webhook given a new
// signing secret shows the secret once, here (a new URL gets a new secret).
"use strict";

Hub.start(() => {
  const { api, h, _, ngettext } = Hub;
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const $ = (id) => document.getElementById(id);
  const figures = new Map(boot.figures.map((figure) => [figure.value, figure.label]));
  const comparisons = { below: _("below"), above: _("above") };
  const clients = new Map(boot.clients.map((client) => [client.client_id, client.name]));

  $("rule-figure").replaceChildren(...boot.figures.map((figure) => h("option", { value: figure.value }, figure.label)));
  $("rule-client").replaceChildren(h("option", { value: "" }, _("All clients")), ...boot.clients.map((client) => h("option", { value: client.client_id }, client.name)));
  $("rule-time-zone").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  function showSecret(secret) {
    $("alerts-secret").replaceChildren(
      _("The webhook's signing secret, shown only now: keep it where your receiver can check the X-Hub-Signature header with it."), " ",
      h("code", { id: "webhook-secret" }, secret));
    $("alerts-secret").hidden = false;
  }

  function showError(message) {
    $("alerts-error").textContent = message;
    $("alerts-error").hidden = !message;
  }

  // A value as the figure has it: an amount in the company's currency, weeks or hours.
  function value(figure, number, currency) {
    if (number === null || number === undefined) return "—";
    if (figure === "runway_weeks") return _("%(count)s weeks", { count: Hub.count(Number(number)) });
    if (figure === "failing_hours") return _("%(hours)s hours", { hours: Hub.count(Number(number)) });
    return currency ? Hub.amount(number, currency) : Hub.count(Number(number));
  }

  function condition(rule) {
    return `${figures.get(rule.figure) || rule.figure} ${comparisons[rule.comparison]} ${value(rule.figure, rule.threshold, null)}`;
  }

  // Which alerts the page shows; an answer read for the other choice is not drawn.
  const shownStatus = () => ($("alerts-ended").checked ? "all" : "open");
  const loadAlerts = Hub.serialReads(async () => {
    const status = shownStatus();
    try {
      const { data } = await api("GET", `/api/v1/alerts?status=${status}`);
      if (shownStatus() !== status) return;
      $("alerts-body").replaceChildren(...(data.alerts.length ? data.alerts.map((alert) => h("tr", { dataset: { open: String(alert.ended_at === null) } },
        h("td", { title: alert.started_at }, Hub.dateTime(alert.started_at)),
        h("td", {}, alert.rule_name),
        h("td", {}, alert.client_name),
        h("td", {}, alert.company_name || h("span", { class: "muted" }, _("All companies"))),
        h("td", { class: "amount" }, value(alert.figure, alert.value, alert.currency_code)),
        h("td", {}, alert.ended_at ? Hub.dateTime(alert.ended_at) : h("span", { class: "state state-failed" }, _("Open")))))
        : [h("tr", {}, h("td", { colspan: 6 }, status === "open" ? _("No open alerts: no rule holds now.") : _("No alerts yet.")))]));
    } catch (error) {
      if (shownStatus() === status) showError(error.message);
    }
  });

  // How the rule's POSTs to its webhook have gone (its URL as it is now), and the newest
  // error of one not delivered: the receiver's answer, without reading the hub's logs.
  function webhookState(rule) {
    const deliveries = rule.webhook_deliveries;
    if (!rule.webhook_url || !deliveries) return null;
    const parts = [ngettext("%(count)s delivered", "%(count)s delivered", deliveries.delivered)];
    if (deliveries.waiting) parts.push(ngettext("%(count)s waiting for its next try", "%(count)s waiting for their next try", deliveries.waiting));
    if (deliveries.given_up) parts.push(ngettext("%(count)s given up", "%(count)s given up", deliveries.given_up));
    const state = _("Webhook: %(deliveries)s.", { deliveries: parts.join(", ") });
    const error = deliveries.last_error ? " " + _("Last error: %(error)s", { error: deliveries.last_error }) : "";
    return h("div", { class: "muted webhook-state" }, state + error);
  }

  const loadRules = Hub.serialReads(async () => {
    try {
      const { data } = await api("GET", "/api/v1/alert-rules");
      $("rules-body").replaceChildren(...(data.rules.length ? data.rules.map((rule) => {
        const sentBy = [rule.email ? (rule.delivery === "daily_digest" ? _("daily digest at %(time)s (%(zone)s)", { time: (rule.digest_at || "").slice(0, 5), zone: rule.time_zone }) : _("email")) : null,
          rule.webhook_url ? _("webhook") : null].filter(Boolean).join(", ");
        return h("tr", {},
          h("td", {}, rule.name),
          h("td", {}, condition(rule)),
          h("td", {}, rule.client_id ? (clients.get(rule.client_id) || rule.client_id) : _("All clients")),
          h("td", {}, sentBy, webhookState(rule)),
          h("td", {}, rule.owner_name),
          h("td", { class: "amount" }, Hub.count(rule.open_episodes)),
          h("td", {},
            h("button", { type: "button", class: "secondary", "aria-label": _("Change the webhook of %(name)s", { name: rule.name }), onclick: () => changeWebhook(rule) }, _("Change webhook")), " ",
            rule.webhook_url ? h("button", { type: "button", class: "secondary", "aria-label": _("Give the webhook of %(name)s a new signing secret", { name: rule.name }), onclick: () => renewSecret(rule) }, _("New signing secret")) : null, rule.webhook_url ? " " : null,
            h("button", { type: "button", class: "secondary", "aria-label": _("Remove rule %(name)s", { name: rule.name }), onclick: () => remove(rule) }, _("Remove"))));
      }) : [h("tr", {}, h("td", { colspan: 7 }, _("No rules yet: add one below.")))]));
    } catch (error) {
      showError(error.message);
    }
  });

  async function remove(rule) {
    if (!confirm(_("Remove the rule %(name)s? Its open alerts end.", { name: rule.name }))) return;
    try {
      await api("DELETE", `/api/v1/alert-rules/${rule.rule_id}`);
      showError("");
      await Promise.all([loadRules(), loadAlerts()]);
    } catch (error) {
      showError(error.message);
    }
  }

  // The rule as it is now (a colleague may have changed it since the list was drawn), but
  // for what changes says; null if there is nothing left to change (the rule is gone, or a
  // new secret is asked for a webhook removed meanwhile): the list drawn again shows it.
  async function asItIs(rule, changes) {
    const { data } = await api("GET", "/api/v1/alert-rules");
    rule = data.rules.find((candidate) => candidate.rule_id === rule.rule_id);
    if (!rule || (changes.new_webhook_secret && !rule.webhook_url)) return null;
    return {
      name: rule.name,
      client_id: rule.client_id,
      figure: rule.figure,
      comparison: rule.comparison,
      threshold: rule.threshold,
      email: rule.email,
      webhook_url: rule.webhook_url,
      delivery: rule.delivery,
      digest_at: rule.digest_at,
      time_zone: rule.time_zone,
      ...changes,
    };
  }

  // The rule as it is, with another webhook URL (or none): the registry gives up what was
  // still queued for the old URL and answers a new URL with its new secret.
  async function changeWebhook(rule) {
    const url = prompt(_("The webhook URL of %(name)s (empty: no webhook):", { name: rule.name }), rule.webhook_url || "");
    if (url === null) return;
    await save(rule, () => asItIs(rule, { webhook_url: url.trim() || null }));
  }

  // The same receiver, a new secret (the old one leaked, or the receiver was rebuilt): from
  // now on only the new one signs, what is still queued too.
  async function renewSecret(rule) {
    if (!confirm(_("Give the webhook of %(name)s a new signing secret? From now on only the new one signs, the alerts still queued too: give it to your receiver.", { name: rule.name }))) return;
    await save(rule, () => asItIs(rule, { new_webhook_secret: true }));
  }

  async function save(rule, changed) {
    try {
      const body = await changed();
      if (body) {
        const { data } = await api("PUT", `/api/v1/alert-rules/${rule.rule_id}`, body);
        showError("");
        if (data.webhook_secret) showSecret(data.webhook_secret);
      }
      await loadRules();
    } catch (error) {
      showError(error.message);
    }
  }

  // A new rule's save carries an Idempotency-Key: asked again after its answer was lost (a
  // timeout, a dropped connection), it is the same rule, not a second one. The key follows
  // what is asked: the same form sent again keeps it, a changed one (or the next rule) gets a new one.
  let attempt = null;
  function creationKeyFor(body) {
    const asked = JSON.stringify(body);
    if (!attempt || attempt.asked !== asked) {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      attempt = { asked, key: Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("") };
    }
    return attempt.key;
  }

  $("rule-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const daily = $("rule-delivery").value === "daily_digest";
    const body = {
      name: $("rule-name").value.trim(),
      client_id: $("rule-client").value || null,
      figure: $("rule-figure").value,
      comparison: $("rule-comparison").value,
      threshold: $("rule-threshold").value,
      email: $("rule-email").checked,
      webhook_url: $("rule-webhook").value.trim() || null,
      delivery: $("rule-delivery").value,
      digest_at: daily ? $("rule-digest-at").value : null,
      time_zone: $("rule-time-zone").value.trim() || "UTC",
    };
    $("rule-save").disabled = true;
    try {
      const { data } = await api("POST", "/api/v1/alert-rules", body, { "Idempotency-Key": creationKeyFor(body) });
      attempt = null;
      showError("");
      $("rule-status").textContent = _("Rule saved.");
      if (data.webhook_secret) showSecret(data.webhook_secret);
      $("rule-form").reset();
      $("rule-time-zone").value = body.time_zone;
      await loadRules();
    } catch (error) {
      showError(error.message);
      $("rule-status").textContent = "";
    } finally {
      $("rule-save").disabled = false;
    }
  });

  $("alerts-ended").addEventListener("change", loadAlerts);
  // A raised or ended alert changes its client's rows: the live stream says so.
  // A stream (re)opened, or a page that fell behind, may have missed alerts: read again.
  const readBoth = () => { loadAlerts(); loadRules(); };
  Hub.live({ resync: readBoth, rows: readBoth });
  loadAlerts();
  loadRules();
});
