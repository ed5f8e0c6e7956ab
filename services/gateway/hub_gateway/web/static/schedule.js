// The refresh schedule form: the firm's on Manage Clients, a client's own on its card.
// Boot: {"schedule": {"firm": Schedule|null, "own": Schedule|null, "client_id": id|null,
// "card_time_zone": zone|null, "can_edit": bool}}. Saving sends the same body as the JSON API; the read model shows it
// once the registry's event comes back, so the form keeps what was sent.
"use strict";

Hub.start(() => {
  const { api, h, _ } = Hub;
  const root = document.getElementById("refresh-schedule");
  if (!root) return;
  const boot = JSON.parse(document.getElementById("boot").textContent).schedule;
  const forClient = Boolean(boot.client_id);
  const CHOICES = [
    [15, _("Every 15 minutes")], [30, _("Every 30 minutes")], [60, _("Every hour")], [120, _("Every 2 hours")],
    [240, _("Every 4 hours")], [480, _("Every 8 hours")], [720, _("Every 12 hours")], [1440, _("Every day")],
    [10080, _("Every week")],
  ];

  function describe(schedule) {
    if (!schedule) return _("The hub's default schedule (set by whoever runs the hub).");
    const every = schedule.every_minutes === null
      ? _("Never on schedule: only when asked, or when Business Central notifies a change.")
      : (CHOICES.find(([minutes]) => minutes === schedule.every_minutes) || [0, _("Every %(minutes)s minutes", { minutes: schedule.every_minutes })])[1] + ".";
    const quiet = schedule.quiet_from && schedule.quiet_until
      ? " " + _("Quiet hours %(from)s to %(until)s (%(zone)s).", { from: schedule.quiet_from.slice(0, 5), until: schedule.quiet_until.slice(0, 5), zone: schedule.time_zone })
      : "";
    return every + quiet;
  }

  const current = forClient ? (boot.own || null) : boot.firm;
  const summary = h("p", { id: "schedule-summary" });
  function showSummary(schedule, own) {
    if (forClient && !own) summary.textContent = _("This client follows the firm's schedule.") + " " + describe(boot.firm);
    else summary.textContent = describe(schedule);
  }
  showSummary(current, Boolean(boot.own));
  root.append(summary);
  if (!boot.can_edit) {
    root.append(h("p", { class: "hint" }, _("Only the firm's owners and admins change schedules.")));
    return;
  }

  const every = h("select", { id: "schedule-every" },
    h("option", { value: "" }, _("Never on schedule")),
    ...CHOICES.map(([minutes, label]) => h("option", { value: String(minutes) }, label)));
  const quietFrom = h("input", { id: "schedule-quiet-from", type: "time" });
  const quietUntil = h("input", { id: "schedule-quiet-until", type: "time" });
  const zone = h("input", { id: "schedule-time-zone", list: "schedule-zones", maxlength: "64", autocomplete: "off" });
  const zoneList = h("datalist", { id: "schedule-zones" }, ...Hub.timeZoneOptions());
  const error = h("div", { class: "field-error", id: "schedule-error", role: "alert" });
  const saved = h("div", { class: "hint", id: "schedule-saved", role: "status", "aria-live": "polite" });
  // A client's own schedule starts as the firm's, with its quiet hours where the client is
  // (its card's time zone): 22:00 in the accountant's zone protected the wrong night for a
  // client elsewhere.
  const startingZone = (forClient && boot.card_time_zone) || (boot.firm && boot.firm.time_zone) || Hub.placeTimeZoneHere() || "UTC";
  const shown = current || { ...(boot.firm || { every_minutes: 60, quiet_from: null, quiet_until: null }), time_zone: startingZone };
  if (shown.every_minutes !== null && !CHOICES.some(([minutes]) => minutes === shown.every_minutes)) {
    every.append(h("option", { value: String(shown.every_minutes) }, _("Every %(minutes)s minutes", { minutes: shown.every_minutes })));
  }
  every.value = shown.every_minutes === null ? "" : String(shown.every_minutes);
  quietFrom.value = shown.quiet_from ? shown.quiet_from.slice(0, 5) : "";
  quietUntil.value = shown.quiet_until ? shown.quiet_until.slice(0, 5) : "";
  zone.value = shown.time_zone || "UTC";

  const path = forClient ? `/api/v1/clients/${boot.client_id}/refresh-schedule` : "/api/v1/refresh-schedule";
  // One save at a time: two on their way at once may be answered in either order, and the
  // summary would then show whichever came back last, not what the hub kept.
  function saving(on) {
    for (const id of ["schedule-save", "schedule-follow-firm"]) {
      const button = document.getElementById(id);
      if (button) button.disabled = on;
    }
  }
  async function save(event) {
    event.preventDefault();
    error.textContent = "";
    saved.textContent = "";
    const body = {
      every_minutes: every.value === "" ? null : Number(every.value),
      quiet_from: quietFrom.value || null,
      quiet_until: quietUntil.value || null,
      time_zone: zone.value.trim() || "UTC",
    };
    saving(true);
    try {
      await api("PUT", path, body);
      showSummary(body, true);
      saved.textContent = _("Schedule saved.");
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      saving(false);
    }
  }
  async function followFirm() {
    error.textContent = "";
    saving(true);
    try {
      await api("DELETE", path);
      showSummary(null, false);
      saved.textContent = _("Schedule saved.");
    } catch (failure) {
      error.textContent = failure.message;
    } finally {
      saving(false);
    }
  }
  const label = (target, text) => h("label", { for: target }, text);
  root.append(h("form", { id: "schedule-form", class: "schedule-form", novalidate: true, onsubmit: save },
    h("div", { class: "row" }, label("schedule-every", _("Refresh")), every),
    h("div", { class: "row" }, label("schedule-quiet-from", _("Quiet hours from")), h("div", {}, quietFrom, " ", label("schedule-quiet-until", _("until")), " ", quietUntil)),
    h("div", { class: "row" }, label("schedule-time-zone", _("Time zone")), h("div", {}, zone, zoneList)),
    h("p", { class: "hint" }, _("No scheduled refresh starts in the quiet hours; one due then happens when they end. Leave both empty for none.")),
    error,
    h("div", { class: "actions" },
      h("button", { type: "submit", id: "schedule-save" }, _("Save schedule")),
      forClient ? h("button", { type: "button", class: "secondary", id: "schedule-follow-firm", onclick: followFirm }, _("Follow the firm's schedule")) : null),
    saved));
});
