// Manage Clients: give every client card without a time zone one at once (cards that have
// one keep it). The registry answers how many cards it changed; the table shows no zones, so
// the note says so in place of a reload.
"use strict";

Hub.start(() => {
  const { api, ngettext } = Hub;
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
      error.textContent = Hub._("Name a time zone, such as Europe/Amsterdam.");
      zone.focus();
      return;
    }
    button.disabled = true;
    try {
      const { data } = await api("POST", "/api/v1/clients/missing-time-zones", { time_zone: name });
      form.hidden = true;
      document.getElementById("missing-time-zones-note").hidden = true;
      saved.textContent = data.clients === 0 ? Hub._("Every client has a time zone already.") : ngettext(
        "%(zone)s is now the time zone of one client.",
        "%(zone)s is now the time zone of %(count)s clients.",
        data.clients,
        { zone: name, count: data.clients },
      );
    } catch (failure) {
      error.textContent = failure.message;
      zone.focus();
    } finally {
      button.disabled = false;
    }
  });
});
