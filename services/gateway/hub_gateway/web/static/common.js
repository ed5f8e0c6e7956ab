// Shared by every page: the messages, the API helper, safe element building, formatting and menus.
"use strict";

const Hub = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  // ------------------------------------------------------------------ messages
  // The page's language is <html lang>; its messages come from the product's one gettext
  // catalogue as JSON (GET /i18n/{language}.json, its URL carrying a content hash so the
  // browser keeps it). _() and ngettext() take the English text as the msgid, like Python's
  // gettext, so `make messages-extract` finds every message; %(name)s placeholders are filled
  // from the values given. A message not translated (or messages not loaded) shows in English.
  const language = document.documentElement.lang || "en";
  let messages = {};
  const plurals = new Intl.PluralRules(language);
  const ready = (async () => {
    const url = document.querySelector('meta[name="hub-messages"]')?.content;
    if (!url) return;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) messages = (await response.json()).messages || {};
    } catch (_) { /* the page goes on in English */ }
  })();
  function fill(text, values) {
    if (!values) return text;
    return text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }
  function _(message, values) {
    const translated = messages[message];
    return fill(typeof translated === "string" ? translated : message, values);
  }
  // Every language of the hub has two plural forms, the first for what CLDR calls "one"
  // (1 in English, Dutch and German; 0 and 1 in French), as their catalogues' Plural-Forms say.
  function ngettext(singular, plural, n, values) {
    const one = plurals.select(n) === "one";
    const forms = messages[singular];
    const text = Array.isArray(forms) ? forms[one ? 0 : 1] : (one ? singular : plural);
    return fill(text, { count: count(n), ...values });
  }
  // A page's script starts once its messages are there: Hub.start(() => { … }).
  function start(main) { ready.then(main); }

  class ApiError extends Error {
    constructor(status, message, field, body) {
      super(message);
      this.status = status;
      this.field = field;
      this.body = body;
    }
  }

  // Every call names what went wrong in words a person can act on.
  async function api(method, path, body, headers) {
    const init = { method, headers: { Accept: "application/json", ...(headers || {}) }, credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, _("The hub cannot be reached. Check your connection and try again."));
    }
    if (response.status === 401) {
      window.location.assign("/sign-in?next=" + encodeURIComponent(location.pathname + location.search));
      throw new ApiError(401, _("Your session has ended; sign in again."));
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok && response.status !== 202) {
      throw new ApiError(response.status, describe(data, response), fieldOf(data), data);
    }
    return { status: response.status, data, headers: response.headers };
  }

  function fieldOf(data) {
    const detail = data && data.detail;
    if (detail && typeof detail === "object" && !Array.isArray(detail)) return detail.field || null;
    if (Array.isArray(detail) && detail[0] && Array.isArray(detail[0].loc)) return String(detail[0].loc.at(-1));
    return null;
  }

  function describe(data, response) {
    const detail = data && data.detail;
    if (typeof detail === "string") return detail;
    if (detail && typeof detail === "object" && !Array.isArray(detail) && detail.message) return detail.message;
    if (Array.isArray(detail) && detail[0]) {
      const where = (detail[0].loc || []).filter((part) => part !== "body").join(" → ");
      return (where ? where + ": " : "") + detail[0].msg;
    }
    if (response.status === 503) return _("The hub is busy or a service is not answering; try again in a moment.");
    return _("The hub answered %(status)s %(reason)s.", { status: response.status, reason: response.statusText });
  }

  // Builds elements with text set as text: names from clients' systems are never HTML.
  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(element.dataset, value);
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  let locale = undefined; // the browser's, until the accountant picks one
  function setLocale(value) {
    // A tag this browser refuses (saved before the server checked tags so closely, or one
    // this browser is too old for) would make every number throw: the browser's own instead.
    try { locale = value ? Intl.getCanonicalLocales(value)[0] : undefined; } catch (_) { locale = undefined; }
  }
  const formatters = new Map();
  function formatter(currency) {
    const key = `${locale}|${currency || ""}`;
    if (!formatters.has(key)) {
      let made;
      try {
        made = currency
          ? new Intl.NumberFormat(locale, { style: "currency", currency, currencyDisplay: "code" })
          : new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      } catch (_) {
        // Not an ISO 4217 code (BC allows any LCY code): the number, then the code as given.
        const plain = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
        made = { format: (value) => `${plain.format(value)} ${currency}` };
      }
      formatters.set(key, made);
    }
    return formatters.get(key);
  }
  function amount(value, currency) {
    if (value === null || value === undefined || value === "") return "—";
    return formatter(currency).format(Number(value));
  }
  function count(value) {
    if (value === null || value === undefined) return "—";
    return new Intl.NumberFormat(locale).format(value);
  }
  function dateTime(value) {
    if (!value) return "—";
    return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(new Date(value));
  }
  // Hours and minutes in the accountant's locale and the browser's time zone ("14:05").
  function time(value) {
    if (!value) return "—";
    return new Intl.DateTimeFormat(locale, { timeStyle: "short" }).format(new Date(value));
  }
  function date(value) {
    if (!value) return "—";
    return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeZone: "UTC" }).format(new Date(value));
  }
  function age(value) {
    if (!value) return _("never");
    const seconds = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
    const relative = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
    if (seconds < 45) return relative.format(-Math.round(seconds), "second");
    if (seconds < 3600) return relative.format(-Math.round(seconds / 60), "minute");
    if (seconds < 86400) return relative.format(-Math.round(seconds / 3600), "hour");
    return relative.format(-Math.round(seconds / 86400), "day");
  }

  // Menus: a button with aria-haspopup opens the list; arrows move, Escape closes.
  function closeMenus(except) {
    let closed = false;
    for (const menu of document.querySelectorAll("[data-menu]")) {
      if (menu === except) continue;
      const list = menu.querySelector("[role=menu]");
      const button = menu.querySelector("[aria-haspopup]");
      if (list && !list.hidden) { list.hidden = true; button.setAttribute("aria-expanded", "false"); closed = true; }
    }
    // What a page held back while a menu was open (a live row) can be drawn now.
    if (closed && !menuOpen()) document.dispatchEvent(new CustomEvent("hub:menus-closed"));
  }
  function menuOpen() {
    return document.querySelector("[data-menu] [role=menu]:not([hidden])") !== null;
  }
  function openMenu(menu) {
    closeMenus(menu);
    const list = menu.querySelector("[role=menu]");
    const button = menu.querySelector("[aria-haspopup]");
    list.hidden = false;
    button.setAttribute("aria-expanded", "true");
    placeMenu(menu, list, button);
    list.querySelector("[role=menuitem]")?.focus();
  }
  // A menu inside a scrolling box (the table) floats above the page instead of being clipped
  // by the box, and opens upwards where the window has no room below the button.
  function placeMenu(menu, list, button) {
    if (!menu.closest(".table-wrap")) return;
    const anchor = button.getBoundingClientRect();
    list.classList.add("floating");
    const height = list.offsetHeight;
    const below = window.innerHeight - anchor.bottom;
    list.style.top = `${below >= height + 8 ? anchor.bottom + 2 : Math.max(8, anchor.top - height - 2)}px`;
    list.style.left = `${Math.max(8, Math.min(anchor.right - list.offsetWidth, window.innerWidth - list.offsetWidth - 8))}px`;
  }
  // A floating menu follows its button when the page or the table scrolls.
  document.addEventListener("scroll", () => {
    for (const list of document.querySelectorAll("[data-menu] [role=menu].floating:not([hidden])")) {
      const menu = list.closest("[data-menu]");
      placeMenu(menu, list, menu.querySelector("[aria-haspopup]"));
    }
  }, true);
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-menu] > [aria-haspopup]");
    if (button) {
      const menu = button.parentElement;
      const list = menu.querySelector("[role=menu]");
      if (list.hidden) openMenu(menu); else closeMenus();
      return;
    }
    if (!event.target.closest("[data-menu] [role=menu]")) closeMenus();
    else if (event.target.closest("[role=menuitem]")) {
      // Focus goes back to the menu's button, unless the item moved it on (a pane, a box).
      const menu = event.target.closest("[data-menu]");
      const focusWasInMenu = menu.contains(document.activeElement) || document.activeElement === document.body;
      closeMenus();
      if (focusWasInMenu && document.body.contains(menu)) menu.querySelector("[aria-haspopup]").focus();
    }
  });
  document.addEventListener("keydown", (event) => {
    const menu = event.target.closest("[data-menu]");
    if (!menu) return;
    const items = [...menu.querySelectorAll("[role=menuitem]")];
    const index = items.indexOf(document.activeElement);
    if (event.key === "Escape") {
      closeMenus();
      menu.querySelector("[aria-haspopup]").focus();
    } else if (event.key === "ArrowDown" && index >= 0) {
      event.preventDefault(); items[(index + 1) % items.length].focus();
    } else if (event.key === "ArrowUp" && index >= 0) {
      event.preventDefault(); items[(index - 1 + items.length) % items.length].focus();
    } else if (event.key === "ArrowDown" && event.target.matches("[aria-haspopup]")) {
      event.preventDefault(); openMenu(menu);
    }
  });

  function technicalDetails(failure) {
    const list = h("dl", { class: "technical" });
    const add = (label, value) => {
      if (value === null || value === undefined || value === "") return;
      list.append(h("dt", {}, label), h("dd", {}, String(value)));
    };
    add(_("Time"), failure.occurred_at ? dateTime(failure.occurred_at) + ` (${failure.occurred_at})` : null);
    add(_("HTTP status"), failure.http_status);
    add(_("BC error code"), failure.bc_error_code);
    add(_("Message"), failure.message);
    add(_("Correlation id"), failure.correlation_id);
    add(_("Kind"), failure.kind);
    return list;
  }

  // A refresh waiting to retry after a transient failure: what happened and when it tries again.
  function waitingText(failure, nextAttemptAt) {
    const next = _("next try at %(time)s", { time: time(nextAttemptAt) });
    return failure ? `${failureText(failure.summary)} — ${next}` : next;
  }

  // A failure's summary and fix are catalogue messages (the fetcher's texts per kind, marked
  // where they are defined), stored in English in the events: shown in the page's language.
  function failureText(text) { return text ? _(text) : ""; }

  // ------------------------------------------------------------------ downloads

  function filenameOf(disposition) {
    const encoded = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "");
    if (encoded) { try { return decodeURIComponent(encoded[1]); } catch (_) { /* fall through */ } }
    const plain = /filename="?([^";]+)"?/i.exec(disposition || "");
    return plain ? plain[1] : "download";
  }

  // A workbook is fetched before it is saved: a refusal (no figures yet, no access, the
  // client's BC not answering) is said on the page instead of saved as a file.
  async function download(path) {
    let response;
    try {
      response = await fetch(path, { credentials: "same-origin" });
    } catch (error) {
      throw new ApiError(0, _("The hub cannot be reached. Check your connection and try again."));
    }
    if (!response.ok) {
      const text = await response.text();
      let data = null;
      try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
      throw new ApiError(response.status, describe(data, response), fieldOf(data), data);
    }
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: filenameOf(response.headers.get("Content-Disposition")), hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function downloadProblem(message) {
    let banner = document.getElementById("page-error");
    if (!banner) {
      banner = h("div", { class: "banner error", id: "page-error", role: "alert" });
      document.querySelector("main")?.prepend(banner);
    }
    banner.textContent = message;
    banner.hidden = false;
  }

  document.addEventListener("click", async (event) => {
    const link = event.target.closest("a[download]");
    if (!link || link.href.startsWith("blob:") || event.defaultPrevented) return;
    event.preventDefault();
    closeMenus();
    const label = link.textContent.trim();
    link.setAttribute("aria-busy", "true");
    try {
      await download(link.href);
    } catch (error) {
      downloadProblem(_("%(label)s could not be downloaded: %(reason)s", { label, reason: error.message }));
    } finally {
      link.removeAttribute("aria-busy");
    }
  });

  // An axis label: "120K", "1.5M" in the chosen locale.
  function compactAmount(value) {
    return new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 }).format(value);
  }

  // Numbers a loader's calls: the check it returns says whether the call is still the latest.
  // Answers to reads on their way at once may arrive in any order; an older one must not
  // replace a newer one, nor show under another filter's heading. For reads the accountant
  // asks for (a filter, a page), where the newest question is the only one that matters.
  function latestCall() {
    let latest = 0;
    return () => {
      const mine = ++latest;
      return () => mine === latest;
    };
  }

  // A read a page repeats on each live change: one at a time, so no older answer can land
  // after a newer one, and asked for again while one is on its way it reads once more when
  // that one ends (many changes meanwhile, one more read): a burst of changes never keeps
  // every answer from being drawn. ``read`` draws its own answer (or failure), after checking
  // that what it was read for (a view, a filter) is still what the page shows.
  function serialReads(read) {
    let running = null;
    let again = false;
    return function ask() {
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        try {
          do {
            again = false;
            try { await read(); } catch (_) { /* the read draws its own failure */ }
          } while (again);
        } finally {
          running = null;
        }
      })();
      return running;
    };
  }

  // The live stream (GET /api/v1/live) every page that follows changes opens, one way:
  // - ``resync`` runs whenever the stream (re)opens or the server says the page fell behind
  //   (``reload``): what changed meanwhile was never told, so the page reads it afresh;
  // - ``rows`` and ``failures`` get the changes as they come;
  // - ``status`` hears "live", "reconnecting" or "refused" (with the server's reason).
  // The browser reconnects by itself after a dropped connection; a stream it gave up on (an
  // answer that was not a stream: too many tabs, a server error) is opened again later, at
  // growing and scattered intervals so a restarted replica is not met by every page at once,
  // and a session that ended leads to the sign-in page (``api`` goes there on a 401).
  function live({ resync = () => {}, rows = null, failures = null, status = () => {} }) {
    let source = null;
    let attempts = 0;
    function open() {
      source = new EventSource("/api/v1/live");
      source.addEventListener("ready", () => { attempts = 0; status("live"); resync(); });
      source.addEventListener("reload", () => resync());
      if (rows) source.addEventListener("rows", (event) => rows(JSON.parse(event.data)));
      if (failures) source.addEventListener("failures", () => failures());
      source.addEventListener("refused", (event) => {
        status("refused", JSON.parse(event.data).message);
        openLater(60000);
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) openLater(null);
        status("reconnecting");
      });
    }
    function openLater(milliseconds) {
      source.close();
      attempts += 1;
      const wait = (milliseconds || Math.min(60000, 2000 * 2 ** Math.min(attempts, 5))) * (0.5 + Math.random());
      setTimeout(async () => {
        try {
          await api("GET", "/api/v1/me");
        } catch (error) {
          if (error.status === 401) return; // on its way to the sign-in page
        }
        open();
      }, wait);
    }
    open();
  }

  // Names an accountant chose, listed in a sentence: each quoted, since a name may hold the
  // list's own comma ("Cash low, urgent"), and joined as the page's language joins a list
  // (the language that quotes them, not the number and date formats' locale).
  function quotedList(names) {
    const quoted = names.map((name) => _("“%(name)s”", { name }));
    return typeof Intl.ListFormat === "function" ? new Intl.ListFormat(language, { type: "conjunction" }).format(quoted) : quoted.join(", ");
  }

  // The IANA time zones the browser knows, as <option>s of a field's suggestions.
  function timeZoneOptions() {
    const names = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    return names.map((name) => h("option", { value: name }));
  }

  // The browser's time zone when it is a place's, as the registry admits for a client
  // (Etc/UTC or US/Eastern are not places); otherwise "".
  function placeTimeZoneHere() {
    const here = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    return /^(Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific)\/./.test(here) ? here : "";
  }

  return { _, ngettext, start, language, api, ApiError, h, amount, count, compactAmount, dateTime, date, time, age, setLocale, closeMenus, technicalDetails, waitingText, failureText, download, quotedList, latestCall, serialReads, live, timeZoneOptions, placeTimeZoneHere };
})();
