// Tools → Check Errors: failed refreshes and tests, newest first, with technical details.
"use strict";

(() => {
  const { api, h } = Hub;
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const $ = (id) => document.getElementById(id);
  const PAGE = 100;
  const params = new URLSearchParams(location.search);
  let offset = 0;
  let clientId = params.get("client_id") || "";

  $("errors-client").replaceChildren(h("option", { value: "" }, "All clients"), ...boot.clients.map((c) => h("option", { value: c.client_id, selected: c.client_id === clientId }, c.name)));
  $("errors-client").addEventListener("change", () => {
    clientId = $("errors-client").value;
    offset = 0;
    history.replaceState(null, "", clientId ? `?client_id=${clientId}` : location.pathname);
    load();
  });
  $("errors-previous").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  $("errors-next").addEventListener("click", () => { offset += PAGE; load(); });

  function entryRow(entry) {
    const failure = entry.failure;
    const waiting = entry.next_attempt_at !== null;
    const what = entry.origin === "connection_test" ? "Test Client URL"
      : waiting ? h("span", {}, "Refresh ", h("span", { class: "state state-waiting" }, "Waiting:"), ` attempt ${Hub.count(entry.attempt)}, next try at ${Hub.time(entry.next_attempt_at)}`)
      : "Refresh";
    const client = entry.client_name
      ? h("span", {}, entry.client_name, entry.client_removed ? h("span", { class: "muted" }, " (removed)") : null)
      : h("span", { class: "muted" }, `${entry.tenant || "?"} / ${entry.environment || "?"}`);
    return h("tr", {},
      h("td", { title: entry.occurred_at }, Hub.dateTime(entry.occurred_at)),
      h("td", {}, client),
      h("td", {}, entry.company_name || h("span", { class: "muted" }, entry.origin === "refresh" ? "All companies" : "—")),
      h("td", {}, what),
      h("td", { style: "white-space:normal;min-width:18rem" }, h("strong", {}, failure.summary), h("br"), failure.fix),
      h("td", { style: "white-space:normal;min-width:16rem" }, h("details", {}, h("summary", {}, failure.http_status ? `HTTP ${failure.http_status}${failure.bc_error_code ? " · " + failure.bc_error_code : ""}` : failure.kind), Hub.technicalDetails(failure))));
  }

  async function load() {
    const query = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    if (clientId) query.set("client_id", clientId);
    try {
      const { data } = await api("GET", "/api/v1/errors?" + query);
      $("errors-error").hidden = true;
      $("errors-body").replaceChildren(...(data.failures.length ? data.failures.map(entryRow)
        : [h("tr", {}, h("td", { colspan: 6 }, "No failed or waiting connections. Every refresh and test succeeded."))]));
      const last = data.offset + data.failures.length;
      $("errors-page-info").textContent = data.total ? `${data.offset + 1}–${last} of ${data.total}` : "";
      $("errors-previous").disabled = data.offset === 0;
      $("errors-next").disabled = last >= data.total;
    } catch (error) {
      $("errors-error").textContent = error.message;
      $("errors-error").hidden = false;
    }
  }

  // New failures appear by themselves on the first page.
  const source = new EventSource("/api/v1/live");
  source.addEventListener("failures", () => {
    if (offset === 0) load();
    else $("errors-live").textContent = "New errors arrived; go to the first page to see them.";
  });
  load();
})();
