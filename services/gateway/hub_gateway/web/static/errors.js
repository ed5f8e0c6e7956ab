// Tools → Check Errors: the open problems as a worklist (one entry per problem of a client or
// company, resolved by the next successful refresh), the resolved ones, and the history of
// every failure, each with the technical details.
"use strict";

Hub.start(() => {
  const { api, h, _, ngettext } = Hub;
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const $ = (id) => document.getElementById(id);
  const PAGE = 100;
  const params = new URLSearchParams(location.search);
  let offset = 0;
  const filter = {
    view: ["open", "resolved", "history"].includes(params.get("view")) ? params.get("view") : "open",
    client_id: params.get("client_id") || "",
    kind: boot.kinds.some((kind) => kind.value === params.get("kind")) ? params.get("kind") : "",
  };

  $("errors-client").replaceChildren(h("option", { value: "" }, _("All clients")), ...boot.clients.map((c) => h("option", { value: c.client_id, selected: c.client_id === filter.client_id }, c.name)));
  $("errors-kind").replaceChildren(h("option", { value: "" }, _("Any kind")), ...boot.kinds.map((kind) => h("option", { value: kind.value, selected: kind.value === filter.kind }, kind.label)));
  $("errors-view").value = filter.view;
  for (const [id, key] of [["errors-view", "view"], ["errors-client", "client_id"], ["errors-kind", "kind"]]) {
    $(id).addEventListener("change", () => {
      filter[key] = $(id).value;
      offset = 0;
      const shown = new URLSearchParams(Object.entries(filter).filter(([name, value]) => value && !(name === "view" && value === "open")));
      history.replaceState(null, "", shown.size ? `?${shown}` : location.pathname);
      load();
    });
  }
  $("errors-previous").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  $("errors-next").addEventListener("click", () => { offset += PAGE; load(); });

  function clientCell(entry) {
    return entry.client_name
      ? h("span", {}, entry.client_name, entry.client_removed ? h("span", { class: "muted" }, " ", _("(removed)")) : null)
      : h("span", { class: "muted" }, `${entry.tenant || "?"} / ${entry.environment || "?"}`);
  }

  function details(failure) {
    return h("details", {}, h("summary", {}, failure.http_status ? `HTTP ${failure.http_status}${failure.bc_error_code ? " · " + failure.bc_error_code : ""}` : failure.kind), Hub.technicalDetails(failure));
  }

  function reason(failure) {
    return h("td", { class: "wrap wide" }, h("strong", {}, Hub.failureText(failure.summary)), h("br"), Hub.failureText(failure.fix));
  }

  function problemRow(problem) {
    const latest = problem.latest;
    const waiting = latest.next_attempt_at !== null;
    const status = problem.status === "resolved"
      ? h("span", {}, h("span", { class: "state state-ok" }, _("Resolved")), problem.resolved_at ? ` ${Hub.dateTime(problem.resolved_at)}` : problem.client_removed ? " " + _("(client removed)") : "")
      : waiting ? h("span", {}, h("span", { class: "state state-waiting" }, _("Waiting:")), " ", _("attempt %(attempt)s, next try at %(time)s", { attempt: Hub.count(latest.attempt), time: Hub.time(latest.next_attempt_at) }))
      : h("span", { class: "state state-failed" }, _("Open"));
    const often = ngettext("once", "%(count)s times", problem.occurrences);
    return h("tr", { dataset: { status: problem.status } },
      h("td", {}, status),
      h("td", {}, clientCell(latest)),
      h("td", {}, problem.company_name || h("span", { class: "muted" }, _("All companies"))),
      h("td", { class: "wrap" }, h("span", {}, often), h("br"), h("span", { class: "muted", title: problem.first_seen }, _("since %(time)s", { time: Hub.dateTime(problem.first_seen) })), h("br"),
        h("span", { class: "muted", title: problem.last_seen }, _("last %(age)s", { age: Hub.age(problem.last_seen) }))),
      reason(latest.failure),
      h("td", { class: "wrap" }, details(latest.failure)));
  }

  function historyRow(entry) {
    const waiting = entry.next_attempt_at !== null;
    const what = entry.origin === "connection_test" ? _("Test Client URL")
      : waiting ? h("span", {}, _("Refresh"), " ", h("span", { class: "state state-waiting" }, _("Waiting:")), " ", _("attempt %(attempt)s, next try at %(time)s", { attempt: Hub.count(entry.attempt), time: Hub.time(entry.next_attempt_at) }))
      : _("Refresh");
    return h("tr", {},
      h("td", { title: entry.occurred_at }, Hub.dateTime(entry.occurred_at)),
      h("td", {}, clientCell(entry)),
      h("td", {}, entry.company_name || h("span", { class: "muted" }, entry.origin === "refresh" ? _("All companies") : "—")),
      h("td", {}, what),
      reason(entry.failure),
      h("td", { class: "wrap" }, details(entry.failure)));
  }

  function heading(history) {
    const names = history ? [_("Time"), _("Client"), _("Company"), _("What"), _("Reason and fix"), _("Technical details")]
      : [_("Status"), _("Client"), _("Company"), _("How often"), _("Reason and fix"), _("Technical details")];
    $("errors-head").replaceChildren(...names.map((name) => h("th", { scope: "col" }, name)));
  }

  // The clients of the problems drawn: only a change of theirs can resolve one of them.
  let listedClients = new Set();

  // What a read is for: the view, its filters and the page. An answer for anything else
  // (the accountant changed it meanwhile) is not drawn: the read for the new one follows.
  const readFor = () => JSON.stringify([filter, offset]);
  const load = Hub.serialReads(async () => {
    const asked = readFor();
    const history = filter.view === "history";
    const query = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    if (filter.client_id) query.set("client_id", filter.client_id);
    if (filter.kind) query.set("kind", filter.kind);
    if (!history) query.set("status", filter.view);
    let data;
    try {
      ({ data } = await api("GET", `/api/v1/${history ? "errors" : "problems"}?` + query));
    } catch (error) {
      if (readFor() !== asked) return;
      // The rows drawn last stay, under their own heading.
      $("errors-error").textContent = error.message;
      $("errors-error").hidden = false;
      return;
    }
    if (readFor() !== asked) return;
    $("errors-error").hidden = true;
    heading(history);
    const entries = history ? data.failures : data.problems;
    listedClients = new Set(entries.map((entry) => entry.client_id).filter(Boolean));
    const none = { open: _("No open problems: every client's last refresh succeeded."), resolved: _("No resolved problems yet."), history: _("No failed or waiting connections. Every refresh and test succeeded.") }[filter.view];
    $("errors-body").replaceChildren(...(entries.length ? entries.map(history ? historyRow : problemRow)
      : [h("tr", {}, h("td", { colspan: 6 }, none))]));
    const listed = history ? data.failures.length : data.problems.length;
    const last = data.offset + listed;
    $("errors-page-info").textContent = data.total ? _("%(first)s–%(last)s of %(total)s", { first: Hub.count(data.offset + 1), last: Hub.count(last), total: Hub.count(data.total) }) : "";
    $("errors-previous").disabled = data.offset === 0;
    $("errors-next").disabled = last >= data.total;
  });

  // New failures, and refreshes that resolve a problem, show by themselves on the first page.
  const refresh = () => {
    if (offset === 0) load();
    else $("errors-live").textContent = _("The list changed; go to the first page to see it.");
  };
  // A stream (re)opened, or a page that fell behind, may have missed failures: the first
  // page is read again; a later one is not told "the list changed", which is not known.
  // A firm's rows change all day: the open problems are read again only when a client of
  // theirs changed (new problems come as failures), not at every row of the firm.
  const mayResolve = (message) => filter.view === "resolved" || message.client_ids.some((clientId) => listedClients.has(clientId));
  Hub.live({ resync: () => { if (offset === 0) load(); }, failures: refresh, rows: (message) => { if (filter.view !== "history" && mayResolve(message)) refresh(); } });
  heading(filter.view === "history");
  load();
});
