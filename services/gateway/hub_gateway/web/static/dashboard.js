// The dashboard: rows from /api/v1/dashboard, live updates from /api/v1/live.
"use strict";

Hub.start(() => {
  const { api, h, _, ngettext } = Hub;
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const catalogue = new Map(boot.columns.map((column) => [column.key, column]));
  // The hub speaks en, nl, de and fr; the other locales set formats only (README, "Languages").
  const LOCALES = ["en-US", "en-GB", "de-DE", "de-AT", "de-CH", "fr-FR", "fr-BE", "fr-CH", "nl-NL", "nl-BE", "da-DK", "sv-SE", "nb-NO", "fi-FI", "es-ES", "it-IT", "pl-PL", "pt-BR"];

  const state = {
    preferences: boot.preferences,
    views: boot.views,
    query: { text: "", client_id: "", assigned_accountant_id: "", has_errors: false, needs_attention: false, overdue: false, thresholds: [], sort: "client_name", descending: false },
    offset: 0,
    page: null,
    selected: new Map(), // row key → {client_id, company_id}
    runs: [], // refresh runs in progress: {run_id, expected}
    openDetails: null, // {client_id, company_id}
    // The columns of the saved view picked, while it is on screen; null: the accountant's own
    // (preferences.columns, which picking a view never changes).
    viewColumns: null,
  };
  const shownColumns = () => state.viewColumns || state.preferences.columns;
  Hub.setLocale(state.preferences.locale);

  // First sign-in: the sample client is there to try things on; say so, and how to remove it.
  // A new firm's sample client may arrive after the page (the registry adds it as the firm
  // is created): a row of a client the page did not know asks for the client list again.
  const SAMPLE_NOTE_READ = "hub.sample-note-read";
  const knownClients = new Set(boot.clients.map((client) => client.client_id));
  function showSampleNote(clients) {
    const sample = clients.find((client) => client.sample || client.source === "sample");
    const note = document.getElementById("sample-note");
    if (!sample || !note.hidden || localStorage.getItem(SAMPLE_NOTE_READ)) return;
    note.replaceChildren(
      h("strong", {}, _("%(name)s is a sample client.", { name: sample.name }), " "),
      _("It is the hub's demo Business Central, on every new dashboard so you can try the figures, the details pane, the workbooks and Check Errors."), " ",
      _("Add your own clients under"), " ", h("a", { href: "/clients/new" }, _("Manage Clients → New")), _(", or by accepting a client's Invite External Accountant link."), " ",
      _("Remove the sample from"), " ", h("a", { href: `/clients/${sample.client_id}` }, _("its client card")), " ", _("whenever you like."), " ",
      h("button", { type: "button", class: "secondary", id: "sample-note-close", onclick: () => { localStorage.setItem(SAMPLE_NOTE_READ, "1"); note.hidden = true; $("filter-text").focus(); } }, _("Got it")));
    note.hidden = false;
  }
  async function noticeNewClients(rows) {
    const fresh = rows.filter((row) => !knownClients.has(row.client_id));
    if (!fresh.length) return;
    for (const row of fresh) knownClients.add(row.client_id);
    await readClients();
  }

  // The firm's clients as they are now: the sample note, and the Client filter's choices
  // (a client added since the page opened can be picked; one removed is no longer offered,
  // unless it is the one the rows are filtered by).
  async function readClients() {
    try {
      const { data } = await api("GET", "/api/v1/clients");
      showSampleNote(data.clients);
      fillClientFilter(data.clients);
    } catch (_) { /* both wait for the next page load */ }
  }
  function fillClientFilter(clients) {
    const select = document.getElementById("filter-client");
    const chosen = select.value;
    const kept = chosen && !clients.some((c) => c.client_id === chosen) ? [...select.options].filter((o) => o.value === chosen) : [];
    select.replaceChildren(h("option", { value: "" }, _("All clients")), ...clients.map((c) => h("option", { value: c.client_id }, c.name)), ...kept);
    select.value = chosen;
  }
  showSampleNote(boot.clients);

  const $ = (id) => document.getElementById(id);
  const keyOf = (row) => `${row.client_id}/${row.company_id || ""}`;

  // ------------------------------------------------------------------ alerts
  // The firm's open alerts, counted above the table, and those of the page's clients, marked
  // on their rows (GET /api/v1/alerts/markers, counted in the database however many there
  // are); read again whenever the live stream says rows changed (a raised alert is such a
  // change) and with every page. An alert about a client as a whole marks every row of it.
  let openTotal = 0;
  let markers = [];
  const MARKER_CLIENTS_PER_READ = 100;
  function markersOf(row) {
    return markers.filter((marker) => marker.client_id === row.client_id && (!marker.company_id || marker.company_id === row.company_id));
  }
  function alertMarker(row) {
    const found = markersOf(row);
    const count = found.reduce((sum, marker) => sum + marker.count, 0);
    if (!count) return null;
    const names = [...new Set(found.flatMap((marker) => marker.rule_names))];
    const text = ngettext("%(count)s open alert: %(rules)s", "%(count)s open alerts: %(rules)s", count, { rules: Hub.quotedList(names) + (names.length < count ? " …" : "") });
    return h("a", { class: "alert-marker", href: "/alerts", title: text, "aria-label": text, dataset: { alerts: String(count) } }, "!");
  }
  function markAlerts() {
    const note = $("alerts-note");
    note.hidden = openTotal === 0;
    note.replaceChildren(h("a", { href: "/alerts" }, ngettext("%(count)s open alert", "%(count)s open alerts", openTotal)));
    if (!state.page) return;
    for (const row of state.page.rows) {
      const cell = document.querySelector(`tr[data-key="${CSS.escape(keyOf(row))}"] td.client-cell`);
      if (!cell) continue;
      cell.querySelector(".alert-marker")?.remove();
      const marker = alertMarker(row);
      if (marker) cell.append(" ", marker);
    }
  }
  // An alert raised just after the snapshot whose change started a read may be missing from
  // its answer, and no further change may come: serial reads read once more after it.
  const loadAlerts = Hub.serialReads(async () => {
    const clientIds = state.page ? [...new Set(state.page.rows.map((row) => row.client_id))] : [];
    const reads = [];
    for (let start = 0; start === 0 || start < clientIds.length; start += MARKER_CLIENTS_PER_READ) {
      const params = new URLSearchParams();
      for (const clientId of clientIds.slice(start, start + MARKER_CLIENTS_PER_READ)) params.append("client_id", clientId);
      reads.push(api("GET", "/api/v1/alerts/markers?" + params));
    }
    try {
      const answers = await Promise.all(reads);
      openTotal = answers[0].data.open_total;
      markers = answers.flatMap((answer) => answer.data.markers);
      markAlerts();
    } catch (_) { /* the next change brings them */ }
  });

  function showError(message) {
    const banner = $("page-error");
    banner.textContent = message || "";
    banner.hidden = !message;
  }

  // ------------------------------------------------------------------ the query

  function searchParams() {
    const params = new URLSearchParams();
    const q = state.query;
    if (q.text) params.set("text", q.text);
    if (q.client_id) params.set("client_id", q.client_id);
    if (q.assigned_accountant_id) params.set("assigned_accountant_id", q.assigned_accountant_id);
    if (q.has_errors) params.set("has_errors", "true");
    if (q.needs_attention) params.set("needs_attention", "true");
    if (q.overdue) params.set("overdue", "true");
    for (const t of q.thresholds) params.append("threshold", `${t.column}:${t.comparison}:${t.value}`);
    params.set("sort", (q.descending ? "-" : "") + q.sort);
    params.set("offset", String(state.offset));
    params.set("limit", String(state.preferences.page_size));
    return params;
  }

  // The filters, sort and page live in the address bar too: a reload (the page's own, after
  // a language change or a sign-in that ran out, or F5) or a bookmark shows the same rows.
  const STATUS_SORTS = ["client_name", "company_name", "state", "as_of"];
  function rememberInAddress() {
    const params = searchParams();
    params.delete("limit"); // the accountant's own setting, not the list's
    if (state.offset === 0) params.delete("offset");
    if (params.get("sort") === "client_name") params.delete("sort");
    if (state.viewColumns) params.set("columns", state.viewColumns.join(","));
    const search = params.toString() ? `?${params}` : "";
    // Only when it changes: browsers refuse a page that rewrites its address too often, and
    // live reloads read the same rows again.
    if (search !== window.location.search) history.replaceState(history.state, "", search || window.location.pathname);
  }

  // What the address asks for, where it is something this page can ask the API: a link
  // edited by hand, or kept from a client since removed, shows the rest, not an error.
  function queryFromAddress() {
    const params = new URLSearchParams(window.location.search);
    const q = state.query;
    const offered = (id, value) => [...$(id).options].some((option) => option.value === value);
    q.text = (params.get("text") || "").replace(/[\u0000-\u001f\u007f]/g, "").trim().slice(0, 200);
    q.client_id = offered("filter-client", params.get("client_id") || "") ? params.get("client_id") || "" : "";
    q.assigned_accountant_id = offered("filter-accountant", params.get("assigned_accountant_id") || "") ? params.get("assigned_accountant_id") || "" : "";
    q.has_errors = params.get("has_errors") === "true";
    q.needs_attention = params.get("needs_attention") === "true";
    q.overdue = params.get("overdue") === "true";
    q.thresholds = params.getAll("threshold").slice(0, 20).map((text) => {
      const [column, comparison, value] = text.split(":");
      return { column, comparison, value };
    }).filter((t) => catalogue.has(t.column) && Object.hasOwn(COMPARISONS, t.comparison || "") && /^-?\d{1,26}(\.\d{1,2})?$/.test(t.value || ""));
    const sort = params.get("sort") || "client_name";
    const key = sort.replace(/^-/, "");
    const known = STATUS_SORTS.includes(key) || catalogue.has(key);
    q.sort = known ? key : "client_name";
    q.descending = known && sort.startsWith("-");
    const columns = [...new Set((params.get("columns") || "").split(","))].filter((key) => catalogue.has(key));
    state.viewColumns = columns.length ? columns : null;
    const offset = Number.parseInt(params.get("offset") || "0", 10);
    const size = state.preferences.page_size;
    state.offset = Number.isFinite(offset) && offset > 0 ? Math.floor(offset / size) * size : 0;
  }

  const loadCall = Hub.latestCall();
  // Page reads on their way: a live change patched meanwhile would be undone by their
  // answer, read before it, so such a change asks for the page again (patchRows).
  let pageReadsOnTheirWay = 0;
  // Counts the pages drawn, so totals read for an earlier page are not drawn over a later one.
  let pagesDrawn = 0;
  // A live reload that waits for a row's menu to close (see "live updates").
  let reloadHeldBack = false;
  function rowMenuOpen() {
    return document.querySelector("#grid-body [data-menu] [role=menu]:not([hidden])") !== null;
  }
  // live: the stream asked for it, not the accountant (whose filters and pages always load).
  async function load({ live = false } = {}) {
    rememberInAddress();
    const current = loadCall();
    pageReadsOnTheirWay += 1;
    try {
      const { data } = await api("GET", "/api/v1/dashboard?" + searchParams()).finally(() => { pageReadsOnTheirWay -= 1; });
      if (!current()) return; // a newer query was asked for
      // A row's menu opened while a live reload was on its way: drawing it now would take
      // the menu from under the pointer, so it is asked for again once the menu closes.
      if (live && rowMenuOpen()) { reloadHeldBack = true; return; }
      // The rows matching the filters fell below this page (a live change, a colleague's
      // removal): the last page that has rows is read instead of an empty one.
      if (data.rows.length === 0 && state.offset > 0 && data.total > 0) {
        state.offset = Math.floor((data.total - 1) / state.preferences.page_size) * state.preferences.page_size;
        return load({ live });
      }
      state.page = data;
      pagesDrawn += 1;
      showError("");
      render();
      loadAlerts();
    } catch (error) {
      if (current()) showError(error.message);
    }
  }

  // ------------------------------------------------------------------ reporting currency
  // Amounts in the accountant's reporting currency (the API converts them with each
  // company's own exchange rates); every word about it is here.
  const NOT_CONVERTED = {
    currency_unknown: () => _("this company's Business Central does not say its currency"),
    rates_not_read: () => _("no exchange rates read yet: refresh the company"),
    rates_unavailable: () => _("this client's Business Central did not give its exchange rates"),
    no_rate: (currency) => _("no %(currency)s rate in this client's Business Central", { currency }),
    unusable_rate: (currency) => _("the %(currency)s rate in this client's Business Central is zero or negative", { currency }),
  };
  const CURRENCY_WORDS = {
    converted: (a) => _("Converted from %(original)s at 1 %(currency)s = %(rate)s %(original_currency)s (rate from %(day)s)",
      { original: Hub.amount(a.original, a.original_currency), currency: a.currency, rate: a.lcy_per_unit, original_currency: a.original_currency, day: Hub.date(a.rate_date) }),
    notConverted: (a) => {
      const shownIn = a.original_currency || _("its own currency");
      return _("Not converted: %(reason)s; shown in %(currency)s", { reason: NOT_CONVERTED[a.not_converted](a.currency), currency: shownIn });
    },
    ownCurrency: _("Each company's own currency"),
    heading: (label, currency) => _("%(figure)s, in %(currency)s (converted where marked ≈)", { figure: label, currency }),
    total: (key) => ({ overdue_sales_invoices_amount: _("overdue sales"), overdue_purchase_invoices_amount: _("overdue purchases") })[key] || key,
    notCounted: (count) => ngettext("%(count)s not converted", "%(count)s not converted", count),
    ratesTitle: _("Exchange rates in this company's Business Central"),
    rate: (r, lcy) => (r.lcy_per_unit === null ? _("%(currency)s: zero or negative, not used", { currency: r.currency_code })
      : _("1 %(currency)s = %(rate)s %(lcy)s (from %(day)s)", { currency: r.currency_code, rate: r.lcy_per_unit, lcy, day: Hub.date(r.starting_date) })),
    noRates: (why) => (why ? _("Not read: %(reason)s", { reason: _(why) }) : _("None read yet: refresh the company.")),
    detailsNote: (a) => (a.converted ? _("The dashboard shows this company's amounts in %(currency)s: %(conversion)s. The amounts here are the company's own.", { currency: a.currency, conversion: CURRENCY_WORDS.converted(a) })
      : a.value === null ? `${CURRENCY_WORDS.notConverted(a)}.` : ""),
  };

  // One amount cell: as stored, or in the reporting currency marked "≈" (the original,
  // rate and date on hover), or the original marked "⚠" when it cannot be converted.
  function amountCell(row, key) {
    const shown = row.amounts && row.amounts[key];
    if (!shown) return h("td", { class: "amount" }, Hub.amount(row.values[key], row.currency_code));
    if (shown.converted) {
      const text = CURRENCY_WORDS.converted(shown);
      return h("td", { class: "amount converted", title: text, dataset: { converted: "yes", value: shown.value } },
        h("span", { class: "currency-mark", "aria-hidden": "true" }, "≈"), Hub.amount(shown.value, shown.currency), h("span", { class: "visually-hidden" }, ` (${text})`));
    }
    if (shown.value !== null) return h("td", { class: "amount", dataset: { converted: "same", value: shown.value } }, Hub.amount(shown.value, shown.currency));
    const why = CURRENCY_WORDS.notConverted(shown);
    return h("td", { class: "amount unconverted", title: why, dataset: { converted: "no" } },
      h("span", { class: "currency-mark", "aria-hidden": "true" }, "⚠"), Hub.amount(shown.original, shown.original_currency), h("span", { class: "visually-hidden" }, ` (${why})`));
  }

  // The summary's totals in the reporting currency, and how many rows are not in them.
  function totalTiles(totals) {
    return (totals || []).map((total) => h("div", { class: "tile tile-quiet", id: `summary-${total.key}` },
      h("span", { class: "tile-value" }, "≈ ", Hub.amount(total.total, total.currency)),
      h("span", { class: "tile-label" }, CURRENCY_WORDS.total(total.key), total.not_converted ? ` (${CURRENCY_WORDS.notCounted(total.not_converted)})` : "")));
  }

  // ------------------------------------------------------------------ rendering

  const COMPARISONS = { gt: ">", ge: "≥", lt: "<", le: "≤", eq: "=", ne: "≠" };

  // A figure's heading is its short name (without "(amount)"); the full name is the tooltip.
  function headerCell(key, label, numeric, sticky, short = label) {
    const sorted = state.query.sort === key;
    const reporting = state.preferences.reporting_currency;
    const full = reporting && catalogue.get(key)?.kind === "amount" ? CURRENCY_WORDS.heading(label, reporting) : label;
    const classes = [numeric ? "amount" : null, sticky ? "sticky" : null].filter(Boolean).join(" ") || null;
    return h("th", { scope: "col", class: classes, title: short === full ? null : full, dataset: { sortKey: key }, "aria-sort": sorted ? (state.query.descending ? "descending" : "ascending") : "none" },
      h("button", { type: "button", class: "sort", "aria-label": short === full ? null : full, onclick: () => sortBy(key) }, short,
        sorted ? h("span", { "aria-hidden": "true" }, state.query.descending ? " ▼" : " ▲") : null));
  }

  let headSignature = "";
  function renderHead() {
    // Rebuilt only when it changes, so a focused header button keeps its focus.
    const signature = JSON.stringify([shownColumns(), state.preferences.reporting_currency, state.query.sort, state.query.descending]);
    if (signature === headSignature) return;
    headSignature = signature;
    const focusedSort = document.activeElement?.closest("#grid-head th")?.dataset.sortKey;
    const row = $("grid-head");
    // Status first: who, which company, its state and age stay in view (sticky) while the
    // figures scroll under them.
    row.replaceChildren(
      h("th", { scope: "col", class: "sticky" }, h("span", { class: "visually-hidden" }, _("Select"))),
      headerCell("client_name", _("Client Name"), false, true),
      headerCell("company_name", _("Company Name"), false, true),
      headerCell("state", _("State"), false, true),
      headerCell("as_of", _("As of"), false, true),
      ...shownColumns().map((key) => headerCell(key, catalogue.get(key).label, true, false, catalogue.get(key).short)),
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, _("Actions"))),
    );
    if (focusedSort) row.querySelector(`th[data-sort-key="${focusedSort}"] button`)?.focus();
    for (const cell of row.querySelectorAll("th.sticky")) stickyWatcher.observe(cell);
  }

  const STATES = { ok: _("OK"), failed: _("Failed"), queued: _("Queued"), refreshing: _("Refreshing"), waiting: _("Waiting"), removed: _("Removed") };
  function stateBadge(row) {
    const badge = h("span", { class: `state state-${row.state}` }, row.state === "waiting" ? _("Waiting:") : STATES[row.state] || row.state);
    if (row.state === "waiting") {
      return h("span", {}, badge, " ", h("a", { href: `/errors?client_id=${row.client_id}`, title: row.failure ? Hub.failureText(row.failure.fix) : "" }, Hub.waitingText(row.failure, row.next_attempt_at)));
    }
    if (row.failure) {
      return h("span", {}, badge, " ", h("a", { href: `/errors?client_id=${row.client_id}`, title: Hub.failureText(row.failure.fix) }, Hub.failureText(row.failure.summary)));
    }
    return badge;
  }

  function rowMenu(row) {
    const label = _("Actions for %(name)s", { name: row.company_name || row.client_name });
    const items = [];
    items.push(h("li", { role: "none" }, h("button", { type: "button", role: "menuitem", onclick: () => refreshRows([row]) }, row.company_id ? _("Refresh this company") : _("Refresh this client"))));
    if (row.web_client_link) {
      items.push(h("li", { role: "none" }, h("a", { role: "menuitem", href: row.web_client_link, target: "_blank", rel: "noopener noreferrer" }, _("Go to the client's Business Central"))));
    }
    if (row.company_id) {
      items.push(h("li", { role: "none" }, h("button", { type: "button", role: "menuitem", onclick: () => openDetails(row) }, _("Company details"))));
      items.push(h("li", { role: "none" }, h("a", { role: "menuitem", href: `/api/v1/clients/${row.client_id}/companies/${row.company_id}/workbook`, download: true }, _("Financial statements (Excel)"))));
    }
    items.push(h("li", { role: "none" }, h("button", { type: "button", role: "menuitem", onclick: () => selectMore(row) }, _("Select more clients"))));
    items.push(h("li", { role: "none" }, h("a", { role: "menuitem", href: `/clients/${row.client_id}` }, _("Edit client card"))));
    return h("div", { class: "menu", dataset: { menu: "" } },
      h("button", { type: "button", class: "secondary", "aria-haspopup": "menu", "aria-expanded": "false", "aria-label": label, title: label, dataset: { focus: "menu" } }, "…"),
      h("ul", { role: "menu", hidden: true }, items));
  }

  // The company's health at a glance; the score and its reasons on hover and for readers.
  function healthDot(health) {
    if (!health || health.level === "unknown") return h("span", { class: "health health-unknown", "aria-hidden": "true" }, "○ ");
    const words = { good: _("good"), watch: _("worth a look"), act: _("needs action") }[health.level];
    const text = _("Health %(score)s of 100, %(level)s: %(reasons)s", { score: health.score, level: words, reasons: health.reasons.join(" ") });
    return h("span", { class: `health health-${health.level}`, title: text, role: "img", "aria-label": text, dataset: { score: String(health.score) } }, "● ");
  }

  function renderRow(row) {
    const key = keyOf(row);
    const checkbox = h("input", { type: "checkbox", "aria-label": _("Select %(name)s", { name: `${row.client_name} ${row.company_name || ""}`.trim() }), checked: state.selected.has(key),
      dataset: { focus: "select" }, onchange: (event) => toggleSelected(row, event.target.checked) });
    const companyCell = row.company_id
      ? h("button", { type: "button", class: "linklike", onclick: () => openDetails(row), "aria-label": _("Details of %(name)s", { name: row.company_name }), dataset: { focus: "details" } }, row.company_name)
      : h("span", { class: "muted" }, { failed: _("Companies could not be read"), ok: _("No companies in this environment") }[row.state] || _("Looking for companies…"));
    const figures = shownColumns().map((columnKey) => {
      const column = catalogue.get(columnKey);
      return column.kind === "amount" ? amountCell(row, columnKey) : h("td", { class: "amount" }, Hub.count(row.values[columnKey]));
    });
    return h("tr", { dataset: { key, state: row.state } },
      h("td", { class: "sticky" }, checkbox),
      h("td", { class: "sticky client-cell" }, healthDot(row.health), row.client_name, alertMarker(row) ? " " : null, alertMarker(row)),
      h("td", { class: "sticky" }, companyCell),
      h("td", { class: "sticky state-cell" }, stateBadge(row)),
      h("td", { class: "sticky", title: row.as_of ? Hub.dateTime(row.as_of) : "", dataset: { asOf: row.as_of || "" } }, row.as_of ? Hub.age(row.as_of) : "—"),
      ...figures,
      h("td", {}, rowMenu(row)));
  }

  function render() {
    renderHead();
    const body = $("grid-body");
    const page = state.page;
    // A whole page drawn again (a reload the live stream asked for) keeps the keyboard where
    // it was: on the same control of the same row, if the row is still on the page.
    const active = document.activeElement;
    const focusedRow = active && body.contains(active) ? active.closest("tr[data-key]") : null;
    const focusedKind = focusedRow ? active.closest("[data-focus]")?.dataset.focus : null;
    if (!page.rows.length) {
      const none = page.total === 0 && !hasFilters()
        ? h("div", { class: "empty" }, h("p", {}, _("No clients yet. Add a client by hand with its Business Central URL, or accept a client's Invite External Accountant link.")),
          h("a", { class: "button", href: "/clients/new", id: "empty-add-client" }, _("Add client")))
        : h("div", { class: "empty" }, h("p", {}, _("No rows match these filters.")),
          h("button", { type: "button", class: "secondary", onclick: clearFilters }, _("Clear filters")));
      body.replaceChildren(h("tr", {}, h("td", { colspan: shownColumns().length + 6 }, none)));
    } else {
      body.replaceChildren(...page.rows.map(renderRow));
      if (focusedKind) {
        body.querySelector(`tr[data-key="${CSS.escape(focusedRow.dataset.key)}"] [data-focus="${focusedKind}"]`)?.focus();
      }
    }
    placeStickyColumns();
    noticeNewClients(page.rows);
    const first = page.total ? page.offset + 1 : 0;
    const last = page.offset + page.rows.length;
    $("page-info").textContent = _("Rows %(first)s–%(last)s of %(total)s", { first: Hub.count(first), last: Hub.count(last), total: Hub.count(page.total) });
    $("page-previous").disabled = page.offset === 0;
    $("page-next").disabled = last >= page.total;
    renderCounts(page.states);
  }

  // Sticky columns sit side by side: each starts where the ones before it end.
  function placeStickyColumns() {
    const head = [...$("grid-head").querySelectorAll("th.sticky")];
    let left = 0;
    const offsets = head.map((cell) => { const at = left; left += cell.getBoundingClientRect().width; return at; });
    head.forEach((cell, index) => { cell.style.left = `${offsets[index]}px`; });
    for (const row of $("grid-body").rows) {
      [...row.querySelectorAll("td.sticky")].forEach((cell, index) => { cell.style.left = `${offsets[index] ?? 0}px`; });
    }
  }
  // A wider window, or a column that grows, changes the widths: place the columns again.
  const stickyWatcher = new ResizeObserver(() => placeStickyColumns());
  stickyWatcher.observe($("grid"));

  // The practice at a glance, before any row: what needs the accountant now.
  function renderCounts(states) {
    state.states = states;
    const attention = states.failed + states.waiting;
    const tile = (id, label, value, tone, onclick) => h(onclick ? "button" : "div", { type: onclick ? "button" : null, class: `tile tile-${tone}`, id, onclick },
      h("span", { class: "tile-value" }, Hub.count(value)), h("span", { class: "tile-label" }, label));
    $("summary").replaceChildren(
      tile("summary-attention", ngettext("needs attention", "need attention", attention), attention, attention ? "bad" : "ok", attention ? showProblems : null),
      tile("summary-failed", _("failed"), states.failed, states.failed ? "bad" : "quiet"),
      tile("summary-waiting", _("waiting to retry"), states.waiting, states.waiting ? "wait" : "quiet"),
      tile("summary-refreshing", _("refreshing"), states.queued + states.refreshing, "quiet"),
      tile("summary-ok", _("OK"), states.ok, "ok"),
      ...totalTiles(state.page && state.page.totals),
    );
  }

  // "Need attention": exactly the rows the tile counts (failed or waiting, over the whole
  // practice whatever the filters, so the other filters go), the worst first.
  function showProblems() {
    Object.assign(state.query, noFilters(), { needs_attention: true });
    state.query.sort = "state";
    state.query.descending = false;
    applyQueryToControls();
    filtersChanged();
  }

  // Every filter off (sorting aside); a new thresholds list each time, since it is changed in place.
  function noFilters() {
    return { text: "", client_id: "", assigned_accountant_id: "", has_errors: false, needs_attention: false, overdue: false, thresholds: [] };
  }
  function clearFilters() {
    Object.assign(state.query, noFilters());
    applyQueryToControls();
    filtersChanged();
  }

  function hasFilters() {
    const q = state.query;
    return Boolean(q.text || q.client_id || q.assigned_accountant_id || q.has_errors || q.needs_attention || q.overdue || q.thresholds.length);
  }

  // ------------------------------------------------------------------ filters, sorting, paging

  // The saved view picked no longer says what is on screen once a filter or the sort
  // changes: the picker says so, and picking the view again applies it again.
  // While a view's columns stay on screen, the picker says so with a choice of its own, so
  // that "—" (your own columns) can still be picked.
  const CHANGED_VIEW = "changed";
  function leaveView() {
    const picker = $("views");
    for (const option of [...picker.options]) if (option.value === CHANGED_VIEW) option.remove();
    if (state.viewColumns) picker.append(h("option", { value: CHANGED_VIEW, selected: true }, _("A view's columns, changed")));
    else picker.value = "";
    $("view-delete").disabled = true;
  }

  // Rows sorted by a figure no longer shown would be in an order nothing on screen explains.
  function keepSortVisible() {
    const figure = !["client_name", "company_name", "state", "as_of"].includes(state.query.sort);
    if (figure && !shownColumns().includes(state.query.sort)) { state.query.sort = "client_name"; state.query.descending = false; }
  }

  function sortBy(key) {
    leaveView();
    if (state.query.sort === key) state.query.descending = !state.query.descending;
    else { state.query.sort = key; state.query.descending = false; }
    state.offset = 0;
    renderHead();
    load();
  }

  function filtersChanged() {
    $("view-note").hidden = true; // about a view's filters, which the accountant now changes
    leaveView();
    const q = state.query;
    q.text = $("filter-text").value.trim();
    q.client_id = $("filter-client").value;
    q.assigned_accountant_id = $("filter-accountant").value;
    q.has_errors = $("filter-errors").checked;
    q.needs_attention = $("filter-attention").checked;
    q.overdue = $("filter-overdue").checked;
    state.offset = 0;
    load();
  }

  function renderThresholds() {
    $("threshold-chips").replaceChildren(...state.query.thresholds.map((t, index) => {
      const text = `${catalogue.get(t.column).label} ${COMPARISONS[t.comparison]} ${t.value}`;
      return h("span", { class: "chip" }, text,
        h("button", { type: "button", "aria-label": _("Remove threshold %(threshold)s", { threshold: text }), onclick: () => { state.query.thresholds.splice(index, 1); leaveView(); renderThresholds(); state.offset = 0; load(); } }, "✕"));
    }));
  }

  function fillFilterControls() {
    fillClientFilter(boot.clients);
    $("filter-accountant").replaceChildren(h("option", { value: "" }, _("Anyone")), ...boot.accountants.map((a) => h("option", { value: a.accountant_id }, a.display_name ? `${a.display_name} (${a.email})` : a.email)));
    $("threshold-column").replaceChildren(...boot.columns.map((c) => h("option", { value: c.key }, c.label)));
    renderViews();
  }

  function applyQueryToControls() {
    const q = state.query;
    $("filter-text").value = q.text;
    $("filter-client").value = q.client_id;
    $("filter-accountant").value = q.assigned_accountant_id;
    $("filter-errors").checked = q.has_errors;
    $("filter-attention").checked = q.needs_attention;
    $("filter-overdue").checked = q.overdue;
    renderThresholds();
  }

  let typing = null;
  $("filter-text").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(filtersChanged, 300); });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); filtersChanged(); });
  for (const id of ["filter-client", "filter-accountant", "filter-errors", "filter-attention", "filter-overdue"]) $(id).addEventListener("change", filtersChanged);
  $("threshold-add").addEventListener("click", () => {
    const value = $("threshold-value").value.trim();
    // The API's rule for an amount (at most 2 decimals and 28 digits): a threshold it refuses
    // would stay on the page, and every later read would fail with it.
    if (!/^-?\d{1,26}(\.\d{1,2})?$/.test(value)) {
      showError(_("Type an amount with at most two decimals for the threshold, for example 10000 or 2500.50."));
      $("threshold-value").focus();
      return;
    }
    state.query.thresholds.push({ column: $("threshold-column").value, comparison: $("threshold-comparison").value, value });
    leaveView();
    $("threshold-value").value = "";
    renderThresholds();
    state.offset = 0;
    load();
  });
  $("page-previous").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.preferences.page_size); load(); });
  $("page-next").addEventListener("click", () => { state.offset += state.preferences.page_size; load(); });

  // ------------------------------------------------------------------ saved views

  function renderViews(selectedId) {
    $("views").replaceChildren(h("option", { value: "" }, "—"), ...state.views.map((v) => h("option", { value: v.view_id, selected: v.view_id === selectedId }, v.name)));
    $("view-delete").disabled = !$("views").value;
  }
  $("views").addEventListener("change", async () => {
    const view = state.views.find((v) => v.view_id === $("views").value);
    renderViews(view ? view.view_id : undefined); // without the "changed" choice
    $("view-delete").disabled = !view;
    if (!view) {
      // No view: the accountant's own columns again.
      if (state.viewColumns) { state.viewColumns = null; keepSortVisible(); renderHead(); load(); }
      return;
    }
    const q = view.query;
    state.query = { text: q.text || "", client_id: q.client_id || "", assigned_accountant_id: q.assigned_accountant_id || "", has_errors: q.has_errors, needs_attention: q.needs_attention, overdue: q.overdue,
      thresholds: q.thresholds.map((t) => ({ ...t, value: String(t.value) })), sort: q.sort, descending: q.descending };
    state.viewColumns = view.columns || null;
    keepSortVisible();
    // A client removed or a colleague gone since the view was saved: a filter on them would
    // show no rows with no filter to see (the list has no such choice), so it is dropped, and said.
    const offered = (id, value) => [...$(id).options].some((option) => option.value === value);
    // A client added since the page opened is in no choice yet: the list is read again first.
    if (state.query.client_id && !offered("filter-client", state.query.client_id)) await readClients();
    const dropped = [];
    if (state.query.client_id && !offered("filter-client", state.query.client_id)) {
      state.query.client_id = "";
      dropped.push(_("This view's client is no longer on the dashboard: it shows every client."));
    }
    if (state.query.assigned_accountant_id && !offered("filter-accountant", state.query.assigned_accountant_id)) {
      state.query.assigned_accountant_id = "";
      dropped.push(_("This view's accountant is no longer in the firm: it shows every accountant's clients."));
    }
    // Its own banner: the page's error banner is cleared by the read that follows.
    $("view-note").textContent = dropped.join(" ");
    $("view-note").hidden = !dropped.length;
    state.offset = 0;
    applyQueryToControls();
    load();
  });
  $("view-save").addEventListener("click", () => { $("view-error").textContent = ""; $("view-name").value = ""; $("view-dialog").showModal(); });
  $("view-form").addEventListener("submit", async (event) => {
    if (event.submitter && event.submitter.value !== "save") return;
    event.preventDefault();
    const q = state.query;
    const body = {
      name: $("view-name").value,
      columns: shownColumns(),
      query: { text: q.text || null, client_id: q.client_id || null, assigned_accountant_id: q.assigned_accountant_id || null, has_errors: q.has_errors, needs_attention: q.needs_attention, overdue: q.overdue,
        thresholds: q.thresholds, sort: q.sort, descending: q.descending, limit: state.preferences.page_size },
    };
    try {
      const { data } = await api("POST", "/api/v1/views", body);
      state.views = [...state.views, data].sort((a, b) => a.name.localeCompare(b.name));
      renderViews(data.view_id);
      $("view-dialog").close();
    } catch (error) {
      $("view-error").textContent = error.message;
    }
  });
  $("view-delete").addEventListener("click", async () => {
    const view = state.views.find((v) => v.view_id === $("views").value);
    if (!view || !confirm(_("Delete the view \u201c%(name)s\u201d?", { name: view.name }))) return;
    try {
      await api("DELETE", `/api/v1/views/${view.view_id}`);
      state.views = state.views.filter((v) => v.view_id !== view.view_id);
      renderViews();
      // The view is gone: the accountant's own columns again.
      if (state.viewColumns) { state.viewColumns = null; keepSortVisible(); renderHead(); load(); }
    } catch (error) { showError(error.message); }
  });

  // ------------------------------------------------------------------ columns and display

  function columnItem(key, checked) {
    const id = `column-${key}`;
    const item = h("li", { dataset: { key } },
      h("input", { type: "checkbox", id, checked }),
      h("label", { for: id }, catalogue.get(key).label),
      h("button", { type: "button", class: "secondary", "aria-label": _("Move %(column)s up", { column: catalogue.get(key).label }), onclick: () => { if (item.previousElementSibling) item.parentElement.insertBefore(item, item.previousElementSibling); item.querySelector("button").focus(); } }, "↑"),
      h("button", { type: "button", class: "secondary", "aria-label": _("Move %(column)s down", { column: catalogue.get(key).label }), onclick: () => { if (item.nextElementSibling) item.parentElement.insertBefore(item.nextElementSibling, item); item.querySelectorAll("button")[1].focus(); } }, "↓"));
    return item;
  }
  $("choose-columns").addEventListener("click", () => {
    const chosen = state.preferences.columns;
    const rest = boot.columns.map((c) => c.key).filter((key) => !chosen.includes(key));
    $("columns-list").replaceChildren(...chosen.map((key) => columnItem(key, true)), ...rest.map((key) => columnItem(key, false)));
    const browser = navigator.language || "en-US";
    $("locale-browser").textContent = _("This browser's (%(locale)s)", { locale: browser });
    const locales = [...new Set([...LOCALES, state.preferences.locale].filter(Boolean))];
    // Each choice in its own language ("Nederlands (Nederland)"), as language choosers do.
    const nameOf = (tag) => { try { return new Intl.DisplayNames([tag], { type: "language" }).of(tag) || tag; } catch (_error) { return tag; } };
    $("locale-choice").replaceChildren($("locale-browser"), ...locales.map((l) => h("option", { value: l, lang: l, selected: l === state.preferences.locale }, `${nameOf(l)} (${l})`)));
    $("page-size-choice").replaceChildren(...boot.page_sizes.map((size) => h("option", { value: size, selected: size === state.preferences.page_size }, size)));
    const reporting = state.preferences.reporting_currency;
    // The firm's currencies when the page was loaded, and those of rows read since.
    const onPage = state.page ? state.page.rows.map((row) => row.currency_code) : [];
    const currencies = [...new Set([...boot.currencies, ...onPage, reporting].filter((c) => /^[A-Z]{3}$/.test(c || "")))].sort();
    $("currency-choice").replaceChildren(h("option", { value: "" }, CURRENCY_WORDS.ownCurrency), ...currencies.map((c) => h("option", { value: c, selected: c === reporting }, c)));
    $("columns-error").textContent = "";
    $("columns-dialog").showModal();
  });
  // Enter on a column's checkbox ticks nothing and must not save the dialog half-chosen.
  $("columns-form").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.matches("input[type=checkbox]")) event.preventDefault();
  });
  $("columns-form").addEventListener("submit", async (event) => {
    if (event.submitter && event.submitter.value !== "save") return;
    event.preventDefault();
    const columns = [...$("columns-list").children].filter((li) => li.querySelector("input").checked).map((li) => li.dataset.key);
    const body = { columns, locale: $("locale-choice").value || null, page_size: Number($("page-size-choice").value), reporting_currency: $("currency-choice").value || null };
    try {
      const { data } = await api("PUT", "/api/v1/preferences", body);
      // The language is chosen by the server for each page: a new one means the page anew.
      if (data.locale !== state.preferences.locale) { window.location.reload(); return; }
      state.preferences = data;
      // The accountant's own columns, just chosen, are what the page shows now.
      state.viewColumns = null;
      leaveView();
      keepSortVisible();
      Hub.setLocale(data.locale);
      $("columns-dialog").close();
      state.offset = 0;
      load();
    } catch (error) {
      $("columns-error").textContent = error.message;
    }
  });

  // ------------------------------------------------------------------ selection and refresh

  function toggleSelected(row, on) {
    const key = keyOf(row);
    if (on) state.selected.set(key, { client_id: row.client_id, company_id: row.company_id });
    else state.selected.delete(key);
    showSelectionBar(state.selected.size > 0);
    $("bulk-count").textContent = ngettext("%(count)s selected", "%(count)s selected", state.selected.size);
  }
  // On a phone the selection controls float over the foot of the screen (app.css): the page
  // keeps room below them, as tall as they are now (their count, the language, the width).
  function showSelectionBar(shown) {
    $("bulk").classList.toggle("shown", shown);
    document.body.classList.toggle("selecting", shown);
  }
  new ResizeObserver(() => {
    const bar = $("bulk");
    document.documentElement.style.setProperty("--selection-bar-height", bar.classList.contains("shown") ? `${bar.offsetHeight}px` : "0px");
  }).observe($("bulk"));
  function selectMore(row) {
    toggleSelected(row, true);
    const box = document.querySelector(`tr[data-key="${CSS.escape(keyOf(row))}"] input[type=checkbox]`);
    if (box) { box.checked = true; box.focus(); }
  }
  $("bulk-clear").addEventListener("click", () => {
    state.selected.clear();
    for (const box of document.querySelectorAll("#grid-body input[type=checkbox]")) box.checked = false;
    showSelectionBar(false);
    $("bulk-count").textContent = "";
  });
  $("bulk-refresh").addEventListener("click", async () => {
    await refreshRows([...state.selected.values()]);
    $("bulk-clear").click();
  });

  async function refreshRows(rows) {
    showError("");
    const runs = [];
    let waiting = 0;
    for (const row of rows) {
      const body = row.company_id ? { client_id: row.client_id, company_id: row.company_id } : { client_id: row.client_id };
      try {
        const { data } = await api("POST", "/api/v1/refresh", body);
        if (data.refresh_ids.length) runs.push({ run_id: data.run_id, expected: data.refresh_ids.length });
        waiting += (data.on_their_way || []).length;
      } catch (error) {
        const name = row.company_name || row.client_name || _("a row");
        showError(_("Refresh of %(name)s was not started: %(reason)s", { name, reason: error.message }));
      }
    }
    startProgress(runs, waiting);
  }

  $("refresh-all").addEventListener("click", async () => {
    showError("");
    try {
      const { data } = await api("POST", "/api/v1/refresh", {});
      const runs = data.refresh_ids.length ? [{ run_id: data.run_id, expected: data.refresh_ids.length }] : [];
      startProgress(runs, (data.on_their_way || []).length);
      // The firm already had the most refreshes on their way the hub queues for one firm.
      if (data.not_started) {
        showError(ngettext(
          "%(count)s client was not refreshed: your firm has as many refreshes on their way as the hub queues for one firm. Refresh all companies again once they are through; it goes on with the clients left out.",
          "%(count)s clients were not refreshed: your firm has as many refreshes on their way as the hub queues for one firm. Refresh all companies again once they are through; it goes on with the clients left out.",
          data.not_started));
      }
    } catch (error) { showError(_("Refresh all was not started: %(reason)s", { reason: error.message })); }
  });

  let progressTimer = null;
  // Refreshes asked for earlier and still awaited (a slow or throttled Business Central) are
  // not asked again: their rows show them, and the line says so when nothing new started.
  function startProgress(runs, waiting = 0) {
    if (!runs.length) {
      if (waiting) {
        $("progress-line").textContent = ngettext(
          "Already on its way: %(count)s refresh asked for earlier still waits for Business Central.",
          "Already on their way: %(count)s refreshes asked for earlier still wait for Business Central.",
          waiting);
      }
      return;
    }
    state.runs = [...state.runs, ...runs];
    $("progress").hidden = false;
    $("progress-line").textContent = _("Refresh requested…");
    pollProgress();
  }
  let polling = false;
  async function pollProgress() {
    if (polling || !state.runs.length) return;
    polling = true;
    clearTimeout(progressTimer);
    try {
      let total = 0, done = 0, failed = 0, arrived = true;
      for (const run of state.runs) {
        const { data } = await api("GET", `/api/v1/refresh-runs/${encodeURIComponent(run.run_id)}`);
        total += data.total; done += data.done; failed += data.failed;
        if (data.refreshes < run.expected) arrived = false;
      }
      const bar = $("progress");
      bar.max = Math.max(total, 1);
      bar.value = done;
      const failures = failed ? " " + ngettext("(%(count)s failed — see Tools → Check Errors)", "(%(count)s failed — see Tools → Check Errors)", failed) : "";
      const refreshed = _("%(done)s of %(total)s refreshed", { done: Hub.count(done), total: Hub.count(total) });
      if (arrived && total > 0 && done >= total) {
        $("progress-line").textContent = _("Refresh finished: %(progress)s.", { progress: refreshed + failures });
        bar.hidden = true;
        state.runs = [];
      } else {
        $("progress-line").textContent = total ? refreshed + failures : _("Refresh requested…");
        progressTimer = setTimeout(pollProgress, 2000);
      }
    } catch (error) {
      $("progress-line").textContent = _("Progress unavailable: %(reason)s", { reason: error.message });
      progressTimer = setTimeout(pollProgress, 4000);
    } finally {
      polling = false;
    }
  }

  // ------------------------------------------------------------------ live updates

  // One reload at a time, 400 ms after the first change that asks for it: changes in a
  // stream (a refresh of every company) must not put it off until they stop, and a change
  // after it has gone out asks for the next one.
  let reloadTimer = null;
  function reloadSoon() {
    if (reloadTimer !== null) return;
    reloadTimer = setTimeout(() => {
      reloadTimer = null;
      // Not while a row's menu is open: it reloads once the menu closes.
      if (rowMenuOpen()) reloadHeldBack = true;
      else liveReload();
    }, 400);
  }
  // A live read waits for the one on its way (then one more if asked meanwhile): started
  // every 400 ms, each would drop the answer before it, and a slow page would draw nothing
  // while changes keep coming.
  const liveReload = Hub.serialReads(() => load({ live: true }));

  // Filtered, or sorted by what a refresh changes (a figure, the state, the age): a changed
  // row may no longer match, move on the page, or come onto it from another page, which
  // patching rows in place cannot show.
  function rowsMayMove() {
    return hasFilters() || !["client_name", "company_name"].includes(state.query.sort);
  }

  // Rows that changed while their menu was open; a reload that waited for a menu is
  // reloadHeldBack (beside load).
  const heldBack = new Map();
  document.addEventListener("hub:menus-closed", () => {
    for (const [key, row] of heldBack) {
      const old = document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
      const index = state.page ? state.page.rows.findIndex((shown) => keyOf(shown) === key) : -1;
      if (old && index >= 0 && state.page.rows[index] === row) {
        const focused = old.contains(document.activeElement) ? "menu" : null;
        const fresh = renderRow(row);
        fresh.classList.add("flash");
        old.replaceWith(fresh);
        if (focused) fresh.querySelector(`[data-focus="${focused}"]`)?.focus();
      }
    }
    heldBack.clear();
    if (heldBack.size === 0 && reloadHeldBack) { reloadHeldBack = false; liveReload(); }
    requestAnimationFrame(placeStickyColumns);
  });

  // Totals in the reporting currency are over every filtered row, not only those shown:
  // after live changes, ask for them again (one row's worth of page, the same filters).
  let totalsTimer = null;
  const totalsCall = Hub.latestCall();
  function totalsParams() {
    const params = searchParams();
    params.set("offset", "0");
    params.set("limit", "1");
    return params.toString();
  }
  function refreshTotalsSoon() {
    clearTimeout(totalsTimer);
    totalsTimer = setTimeout(async () => {
      const current = totalsCall();
      const asked = totalsParams();
      const askedFor = JSON.stringify([asked, state.preferences.reporting_currency, pagesDrawn]);
      try {
        const { data } = await api("GET", "/api/v1/dashboard?" + asked);
        // Totals of filters or a currency the accountant has changed since, or read before the
        // page drawn since (which brought its own), are not these rows' totals.
        if (!state.page || !current() || JSON.stringify([totalsParams(), state.preferences.reporting_currency, pagesDrawn]) !== askedFor) return;
        state.page.totals = data.totals;
        renderCounts(data.states);
      } catch (_) { /* the next load brings them */ }
    }, 1000);
  }

  // The reporting currency the server converted a live row's amounts into (null: none).
  const convertedInto = (row) => { const first = row.amounts && Object.values(row.amounts)[0]; return first ? first.currency : null; };

  function patchRows(message) {
    // A reporting currency chosen in another tab: the server's rows follow it, while this
    // page's headings, totals and sort name its own; the page is loaded again, whole.
    const mine = state.preferences.reporting_currency || null;
    if (message.rows.some((row) => convertedInto(row) !== null && convertedInto(row) !== mine)) {
      window.location.reload();
      return;
    }
    if (!state.page) {
      // The first page is still on its way, maybe read before this change.
      if (pageReadsOnTheirWay > 0) reloadSoon();
      return;
    }
    if (message.client_ids.length && rowsMayMove()) {
      // The page is read again instead (its rows, their order and its totals).
      renderCounts(message.states);
      noticeNewClients(message.rows);
      const details = state.openDetails;
      if (details && message.rows.some((row) => row.client_id === details.client_id && row.company_id === details.company_id)) loadDetails();
      reloadSoon();
      if (state.runs.length) pollProgress();
      return;
    }
    const shown = new Map(state.page.rows.map((row, index) => [keyOf(row), index]));
    const clientsInView = new Set(state.page.rows.map((row) => row.client_id));
    let structureChanged = false;
    const totalBefore = state.states ? Object.values(state.states).reduce((a, b) => a + b, 0) : null;
    const totalNow = Object.values(message.states).reduce((a, b) => a + b, 0);
    if (totalBefore !== null && totalBefore !== totalNow) structureChanged = true;
    const arrivedKeys = new Set(message.rows.map(keyOf));
    for (const row of message.rows) {
      const index = shown.get(keyOf(row));
      if (index === undefined) {
        if (clientsInView.has(row.client_id)) structureChanged = true;
        continue;
      }
      if (row.state === "removed") { structureChanged = true; continue; }
      // Sorted by name (else the page is read again above): a renamed client or company
      // may belong elsewhere in the order, even on another page.
      const before = state.page.rows[index];
      if (before.client_name !== row.client_name || before.company_name !== row.company_name) structureChanged = true;
      state.page.rows[index] = row;
      const old = document.querySelector(`tr[data-key="${CSS.escape(keyOf(row))}"]`);
      if (old && old.querySelector("[data-menu] [role=menu]:not([hidden])")) {
        // Its menu is open: redrawing the row would take the menu from under the pointer.
        heldBack.set(keyOf(row), row);
      } else if (old) {
        const fresh = renderRow(row);
        fresh.classList.add("flash");
        // Focus stays on the same control of the row (its checkbox, its company, its menu).
        const focused = old.contains(document.activeElement) ? (document.activeElement.closest("[data-focus]")?.dataset.focus || "menu") : null;
        old.replaceWith(fresh);
        if (focused) fresh.querySelector(`[data-focus="${focused}"]`)?.focus();
      }
      if (state.openDetails && state.openDetails.client_id === row.client_id && state.openDetails.company_id === row.company_id) loadDetails();
    }
    for (const clientId of message.client_ids) {
      if (!clientsInView.has(clientId)) continue;
      for (const key of shown.keys()) if (key.startsWith(clientId + "/") && !arrivedKeys.has(key)) structureChanged = true;
    }
    renderCounts(message.states);
    if (state.page.totals && state.page.totals.length && message.rows.length) refreshTotalsSoon();
    // Fresh rows may change the columns' widths (a longer state, an age): place them again.
    requestAnimationFrame(placeStickyColumns);
    noticeNewClients(message.rows);
    // A page read on its way may have been answered before these rows changed, and would
    // draw them back as they were: the rows shown now, or those of the page asked for.
    if (structureChanged || (pageReadsOnTheirWay > 0 && message.client_ids.length)) reloadSoon();
    if (state.runs.length) pollProgress();
  }

  function connectLive() {
    const live = $("live");
    Hub.live({
      // Whatever changed before the stream (re)opened, or while the page fell behind, is read afresh.
      resync: liveReload,
      rows: (message) => { patchRows(message); loadAlerts(); },
      status: (now, reason) => {
        live.className = now === "live" ? "live-on" : "live-off";
        live.textContent = now === "live" ? _("Live") : now === "refused" ? _("Not live: %(reason)s", { reason: _(reason) }) : _("Reconnecting…");
      },
    });
  }

  // ------------------------------------------------------------------ details pane

  function openDetails(row) {
    state.openDetails = { client_id: row.client_id, company_id: row.company_id };
    state.detailsOpener = document.activeElement;
    $("details").hidden = false;
    $("details-title").textContent = row.company_name || _("Company details");
    $("details-body").replaceChildren(h("p", {}, _("Loading…")));
    loadDetails();
    $("details-close").focus();
  }
  function closeDetails() {
    $("details").hidden = true;
    state.openDetails = null;
    if (state.detailsOpener && document.body.contains(state.detailsOpener)) state.detailsOpener.focus();
  }
  $("details-close").addEventListener("click", closeDetails);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !$("details").hidden && !document.querySelector("dialog[open]")) closeDetails(); });

  // Read again on each change of the open company: serial reads, so the pane never goes
  // back to an older answer. An answer for a company whose pane was closed or replaced
  // meanwhile is not drawn.
  const loadDetails = Hub.serialReads(async () => {
    const target = state.openDetails;
    if (!target) return;
    try {
      const { data } = await api("GET", `/api/v1/clients/${target.client_id}/companies/${target.company_id}`);
      if (state.openDetails !== target) return;
      renderDetails(data);
    } catch (error) {
      if (state.openDetails !== target) return;
      $("details-body").replaceChildren(h("p", { class: "banner error", role: "alert" }, error.message));
    }
  });

  // ``listsTotals``: the invoices listed show their totals including tax (purchase
  // invoices: BC's API has no remaining amount for them), whatever the figure's total is.
  function invoiceTable(caption, figure, currency, counterpartyLabel, listsTotals) {
    if (!figure) return h("p", { class: "muted" }, _("%(figure)s: not read yet.", { figure: caption }));
    const rows = figure.largest.map((invoice) => h("tr", {},
      h("td", {}, h("a", { href: invoice.link, target: "_blank", rel: "noopener noreferrer", "aria-label": _("Open invoice %(number)s in Business Central", { number: invoice.number }) }, invoice.number)),
      h("td", {}, invoice.counterparty),
      h("td", {}, Hub.date(invoice.due_date)),
      h("td", { class: "amount" }, Hub.count(invoice.days_overdue)),
      h("td", { class: "amount" }, Hub.amount(invoice.amount, currency))));
    const note = figure.amount_basis === "total_including_tax"
      ? " " + _("Amounts are invoice totals including tax (BC's API gives no remaining amount for purchase invoices).")
      : listsTotals && figure.largest.length
        ? " " + _("The total is what remains to be paid (Business Central's own figure); the invoices listed show their totals including tax (BC's API gives no remaining amount for purchase invoices).")
        : "";
    return h("div", {},
      h("p", {}, ngettext("%(count)s overdue, %(total)s in all.", "%(count)s overdue, %(total)s in all.", figure.count, { total: Hub.amount(figure.total, currency) }),
        figure.count > figure.largest.length ? " " + ngettext("The largest:", "The %(count)s largest:", figure.largest.length) : "", note),
      figure.largest.length ? h("table", {},
        h("caption", { class: "visually-hidden" }, caption),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, _("No.")), h("th", { scope: "col" }, counterpartyLabel), h("th", { scope: "col" }, _("Due")), h("th", { scope: "col", class: "amount" }, _("Days overdue")), h("th", { scope: "col", class: "amount" }, _("Amount")))),
        h("tbody", {}, rows)) : null);
  }

  // 1, 2 or 5 times a power of ten: axis steps a reader takes in at a glance.
  function niceStep(rough) {
    const power = 10 ** Math.floor(Math.log10(Math.abs(rough) || 1));
    const fraction = rough / power;
    return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
  }

  // Where the cash figure comes from: the accountant must see when the hub found no cash
  // account at all, since a chart in another language names its cash subcategory otherwise.
  function cashSource(cash) {
    if (cash.source === "client_card") return _("The accounts named on the client card.");
    if (cash.source === "cues") return _("The total is Business Central's own Cash Accounts balance.");
    if (!cash.accounts.length) return _("No posting asset account of subcategory Cash was found. If this client's chart names it otherwise, list its cash accounts on the client card.");
    return _("Posting asset accounts of subcategory Cash.");
  }

  // Numbers on the client card these figures do not count: said, since the cash would
  // otherwise read low (or zero) without a word. The card may have changed since the
  // figures were read, so the words allow for that.
  function cashAccountsNotFound(cash, numbers) {
    if (!numbers.length) return null;
    return h("p", { class: "banner warning", id: "cash-not-found", role: "status" }, cash.accounts.length
      ? _("Named on the client card but not counted in these figures: %(numbers)s (not a posting account of this company, or named after the figures were read).", { numbers: numbers.join(", ") })
      : _("No account the client card named when these figures were read is a posting account of this company, so its cash reads 0. Each company of a client keeps its own chart of accounts: check the numbers on the client card."));
  }

  function forecastChart(forecast, currency) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = (tag, attributes, text) => {
      const element = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, v);
      if (text !== undefined) element.textContent = text;
      return element;
    };
    const weeks = forecast.weeks;
    const balances = weeks.map((w) => Number(w.closing_balance));
    const flows = weeks.flatMap((w) => [Number(w.receipts), -Number(w.payments)]);
    const values = [...balances, ...flows, Number(forecast.opening_cash), 0];
    const top = Math.max(...values), bottom = Math.min(...values);
    const span = top - bottom || 1;
    // Room on the left for the amounts of the value axis.
    const width = 560, height = 220, left = 64, right = 8, upper = 12, lower = 36;
    const x = (i) => left + (i + 0.5) * ((width - left - right) / weeks.length);
    const y = (v) => upper + (top - v) / span * (height - upper - lower);
    const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": _("13-week cash-flow forecast; low point %(amount)s", { amount: Hub.amount(forecast.low_point, currency) }) });
    // The value axis: about five round amounts from the bottom to the top, each with its line.
    const step = niceStep(span / 4);
    for (let index = Math.ceil(bottom / step); index * step <= top + step / 1000; index += 1) {
      const tick = index * step + 0; // whole multiples of the step: no -0, no float residue
      chart.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(tick), y2: y(tick) }));
      chart.append(svg("text", { class: "axis", x: left - 4, y: y(tick) + 3, "text-anchor": "end" }, Hub.compactAmount(tick)));
    }
    chart.append(svg("text", { class: "axis-title", x: 4, y: 10 }, currency || ""));
    chart.append(svg("text", { class: "axis-title", x: (left + width - right) / 2, y: height - 4, "text-anchor": "middle" }, _("Weeks from today")));
    chart.append(svg("line", { class: "zero", x1: left, x2: width - right, y1: y(0), y2: y(0) }));
    const barWidth = (width - left - right) / weeks.length / 3;
    weeks.forEach((week, i) => {
      const receipts = Number(week.receipts), payments = Number(week.payments);
      chart.append(svg("rect", { class: "bar-in", x: x(i) - barWidth, y: y(receipts), width: barWidth, height: Math.max(0, y(0) - y(receipts)) }));
      chart.append(svg("rect", { class: "bar-out", x: x(i), y: y(0), width: barWidth, height: Math.max(0, y(-payments) - y(0)) }));
      chart.append(svg("text", { x: x(i), y: height - 20, "text-anchor": "middle" }, _("W%(week)s", { week: i + 1 })));
    });
    // The line starts at today's cash, then each week's closing balance; the dot is the low point.
    const line = [[left, Number(forecast.opening_cash)], ...balances.map((b, i) => [x(i), b])];
    chart.append(svg("polyline", { class: "line", points: line.map(([px, v]) => `${px},${y(v)}`).join(" ") }));
    const [lowX, lowValue] = line.reduce((low, point) => (point[1] < low[1] ? point : low));
    chart.append(svg("circle", { class: "low", cx: lowX, cy: y(lowValue), r: 4 }));
    return chart;
  }

  function renderDetails(details) {
    const figures = details.figures || {};
    const currency = details.currency_code;
    const body = [];
    $("details-title").textContent = details.display_name || details.company_name;
    body.push(h("p", { class: "muted" }, `${details.client_name} · ${currency || ""} · `,
      h("span", { title: Hub.dateTime(details.as_of) }, details.as_of ? _("figures from %(age)s", { age: Hub.age(details.as_of) }) : _("not read yet")), " · ",
      h("span", { class: `state state-${details.state}` }, STATES[details.state] || details.state)));
    if (details.state === "waiting") {
      body.push(h("div", { class: "banner info", role: "status" }, h("strong", {}, _("Waiting:"), " ", Hub.waitingText(details.failure, details.next_attempt_at)), " ", details.failure ? Hub.failureText(details.failure.fix) : "", details.failure ? Hub.technicalDetails(details.failure) : null));
    } else if (details.failure) {
      body.push(h("div", { class: "banner error", role: "alert" }, h("strong", {}, Hub.failureText(details.failure.summary)), " ", Hub.failureText(details.failure.fix), Hub.technicalDetails(details.failure)));
    }
    const shownRow = state.page && state.page.rows.find((r) => r.client_id === details.client_id && r.company_id === details.company_id);
    const shownCash = shownRow && shownRow.amounts && Object.values(shownRow.amounts)[0];
    if (shownCash && CURRENCY_WORDS.detailsNote(shownCash)) body.push(h("p", { class: "muted", id: "details-conversion" }, CURRENCY_WORDS.detailsNote(shownCash)));
    body.push(h("details", { id: "details-rates" }, h("summary", {}, CURRENCY_WORDS.ratesTitle),
      details.exchange_rates.length ? h("ul", {}, details.exchange_rates.map((r) => h("li", {}, CURRENCY_WORDS.rate(r, currency))))
        : h("p", { class: "muted" }, CURRENCY_WORDS.noRates(details.exchange_rates_unavailable))));
    const workbookPath = `/api/v1/clients/${details.client_id}/companies/${details.company_id}/workbook`;
    // The client's today, as the workbook's own default counts it (not the browser's).
    const today = details.client_today;
    const workbookHref = (asOfDate) => (asOfDate && asOfDate !== today ? `${workbookPath}?as_of=${asOfDate}` : workbookPath);
    // The pane is drawn again at each live change of its company (a refresh it asked for,
    // a change in BC): the date picked, or being typed, stays, and keeps its focus.
    const company = `${details.client_id}/${details.company_id}`;
    const before = $("details-body").querySelector("#workbook-as-of");
    const kept = before && before.dataset.company === company ? before : null;
    const focusedBefore = $("details-body").contains(document.activeElement) ? document.activeElement.dataset.focus : null;
    const asOf = kept || h("input", { type: "date", id: "workbook-as-of", value: today, min: "1990-01-01", "data-focus": "as-of", dataset: { company } });
    asOf.max = today;
    const workbook = h("a", { class: "button", href: workbookHref(asOf.value), download: true }, _("Financial statements (Excel)"));
    asOf.onchange = asOf.oninput = (event) => { workbook.href = workbookHref(event.target.value); };
    body.push(h("div", { class: "actions" },
      h("button", { type: "button", "data-focus": "refresh", onclick: () => refreshRows([details]) }, _("Refresh")),
      details.web_client_link ? h("a", { class: "button", href: details.web_client_link, target: "_blank", rel: "noopener noreferrer" }, _("Go to Business Central")) : null,
      workbook,
      h("label", { for: "workbook-as-of" }, _("Statements as of"), " ", asOf)));

    const cash = figures.cash;
    body.push(h("section", { "aria-labelledby": "cash-title" }, h("h3", { id: "cash-title" }, _("Cash accounts")),
      cash ? [h("table", {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, _("No.")), h("th", { scope: "col" }, _("Name")), h("th", { scope: "col", class: "amount" }, _("Balance")))),
        h("tbody", {}, cash.accounts.map((a) => h("tr", {}, h("td", {}, a.number), h("td", {}, a.name), h("td", { class: "amount" }, Hub.amount(a.balance, currency))))),
        h("tfoot", {}, h("tr", {}, h("th", { scope: "row", colspan: 2 }, _("Total")), h("td", { class: "amount" }, Hub.amount(cash.total, currency))))),
        h("p", { class: "muted", id: "cash-source" }, cashSource(cash)),
        cashAccountsNotFound(cash, details.cash_accounts_not_found || [])]
        : h("p", { class: "muted" }, _("Not read yet."))));

    const forecast = figures.cash_flow_forecast;
    body.push(h("section", { "aria-labelledby": "forecast-title" }, h("h3", { id: "forecast-title" }, _("13-week cash-flow forecast")),
      forecast ? [
        h("p", {}, _("Opening cash %(opening)s; low point %(low)s. Bars: receipts (blue) and payments (red) per week; line: cash today, then each week's closing balance; dot: the low point.", { opening: Hub.amount(forecast.opening_cash, currency), low: Hub.amount(forecast.low_point, currency) })),
        forecastChart(forecast, currency),
        h("details", {}, h("summary", {}, _("The forecast as a table")),
          h("table", {},
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, _("Week from")), h("th", { scope: "col", class: "amount" }, _("Receipts")), h("th", { scope: "col", class: "amount" }, _("Payments")), h("th", { scope: "col", class: "amount" }, _("Closing balance")))),
            h("tbody", {}, forecast.weeks.map((w) => h("tr", {}, h("td", {}, Hub.date(w.week_start)), h("td", { class: "amount" }, Hub.amount(w.receipts, currency)), h("td", { class: "amount" }, Hub.amount(w.payments, currency)), h("td", { class: "amount" }, Hub.amount(w.closing_balance, currency))))))),
      ] : h("p", { class: "muted" }, _("Not read yet."))));

    body.push(h("section", { "aria-labelledby": "overdue-sales-title" }, h("h3", { id: "overdue-sales-title" }, _("Overdue sales invoices")),
      invoiceTable(_("Overdue sales invoices"), figures.overdue_sales_invoices, currency, _("Customer"))));
    body.push(h("section", { "aria-labelledby": "overdue-purchase-title" }, h("h3", { id: "overdue-purchase-title" }, _("Overdue purchase invoices")),
      invoiceTable(_("Overdue purchase invoices"), figures.overdue_purchase_invoices, currency, _("Vendor"), true)));
    $("details-body").replaceChildren(...body);
    if (focusedBefore) $("details-body").querySelector(`[data-focus="${focusedBefore}"]`)?.focus();
  }

  // Keep "as of" ages current without asking the server.
  setInterval(() => {
    for (const cell of document.querySelectorAll("td[data-as-of]")) if (cell.dataset.asOf) cell.textContent = Hub.age(cell.dataset.asOf);
  }, 30000);

  fillFilterControls();
  queryFromAddress();
  keepSortVisible();
  leaveView();
  applyQueryToControls();
  load();
  connectLive();
});
