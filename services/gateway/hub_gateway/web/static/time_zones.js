// Manage Clients: give every client card without a time zone one at once (cards that have
// one keep it). The registry answers how many cards it changed; the table shows no zones, so
// the note says so in place of a reload.
"use strict";

Hub.start(() => {
  const { api, h, _, ngettext } = Hub;
  const form = document.getElementById("missing-time-zones-form");
  if (!form) return;
  const zone = document.getElementById("missing-time-zone");
  const error = document.getElementById("missing-time-zone-error");
  const saved = document.getElementById("missing-time-zones-saved");
  const button = document.getElementById("missing-time-zones-save");
  document.getElementById("missing-time-zone-names").replaceChildren(...Hub.timeZoneOptions());
  zone.value = Hub.placeTimeZoneHere();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    saved.textContent = "";
    const name = zone.value.trim();
    if (!name) {
      error.textContent = _("Name a time zone, such as Europe/Amsterdam.");
      zone.focus();
      return;
    }
    button.disabled = true;
    try {
      // The registry gives a share of the cards per answer; a large firm asks again.
      let given = 0;
      let answer;
      do {
        ({ data: answer } = await api("POST", "/api/v1/clients/missing-time-zones", { time_zone: name }));
        given += answer.clients;
      } while (answer.remaining > 0 && answer.clients > 0);
      form.hidden = true;
      document.getElementById("missing-time-zones-note").hidden = true;
      // No card given the zone: no sentence about how many (0 reads as "one" in French).
      const done = given > 0
        ? ngettext("%(zone)s is now the time zone of one client.", "%(zone)s is now the time zone of %(count)s clients.", given, { zone: name, count: given })
        : answer.to_save_again.length ? "" : _("Every client has a time zone already.");
      saved.replaceChildren(done);
      if (answer.to_save_again.length) {
        saved.append(done ? " " : "", ngettext(
          "One card was saved under older rules and takes it once opened and saved:",
          "%(count)s cards were saved under older rules and take it once opened and saved:",
          answer.to_save_again.length, { count: answer.to_save_again.length }), " ");
        answer.to_save_again.forEach((card, index) => {
          if (index) saved.append(", ");
          saved.append(h("a", { href: `/clients/${encodeURIComponent(card.client_id)}` }, card.name));
        });
      }
    } catch (failure) {
      error.textContent = failure.message;
      zone.focus();
    } finally {
      button.disabled = false;
    }
  });
});
