// The consumer portal: one page, one link token (in the URL fragment), the portal API.
(function () {
  "use strict";
  const TOKEN_KEY = "smile-portal-token";
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    // The token leaves the address bar.
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  const main = document.getElementById("main");
  const toast = document.getElementById("toast");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  let toastTimer;
  function say(text) {
    toast.textContent = text;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.textContent = ""; }, 5000);
  }

  class ApiError extends Error {
    constructor(status, body) { super((body && body.message) || "HTTP " + status); this.status = status; }
  }
  async function api(method, path, body) {
    const response = await fetch("/portal/api/" + path, {
      method,
      headers: Object.assign({ authorization: "Bearer " + token }, body ? { "content-type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, json);
    return json.data;
  }

  function expired() {
    main.replaceChildren(el("section", { class: "card expired", role: "alert" },
      el("h2", {}, "This link does not work any more"),
      el("p", { class: "muted" }, "Portal links work for a short time only. Ask the service that sent you here for a new one.")));
    document.getElementById("session").textContent = "";
  }

  function chart(overview) {
    const since = Date.parse(overview.since);
    const minutes = overview.minutes.map((m) => ({ x: Math.floor((Date.parse(m.minute) - since) / 60000), ...m }));
    const total = (m) => m.succeeded + m.failed + m.pending + m.cancelled;
    const max = Math.max(1, ...minutes.map(total));
    const sums = { succeeded: 0, failed: 0, pending: 0 };
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 1440 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    const colors = { succeeded: "#047857", failed: "#b91c1c", pending: "#b45309" };
    for (const m of minutes) {
      let y = 100;
      for (const kind of ["succeeded", "failed", "pending"]) {
        sums[kind] += m[kind];
        if (!m[kind]) continue;
        const h = Math.max(1.5, (m[kind] / max) * 96);
        y -= h;
        const bar = document.createElementNS(ns, "rect");
        Object.entries({ x: m.x, y, width: 3, height: h, fill: colors[kind] }).forEach(([k, v]) => bar.setAttribute(k, v));
        svg.append(bar);
      }
    }
    const label = `${sums.succeeded} succeeded, ${sums.failed} failed, ${sums.pending} pending in the last 24 hours; at most ${max} in one minute`;
    return el("section", { class: "card chart", "aria-labelledby": "chart-title" },
      el("h2", { id: "chart-title" }, "Deliveries per minute, last 24 hours"),
      el("div", { role: "img", "aria-label": label }, svg),
      el("div", { class: "axis", "aria-hidden": "true" }, el("span", {}, "24 h ago"), el("span", {}, "12 h ago"), el("span", {}, "now")),
      el("ul", { class: "legend" },
        el("li", { class: "succeeded" }, `Succeeded ${sums.succeeded}`),
        el("li", { class: "failed" }, `Failed ${sums.failed}`),
        el("li", { class: "pending" }, `Pending ${sums.pending}`),
        el("li", { class: "muted" }, `Peak ${max}/min`)));
  }

  function status(sub) {
    if (!sub.active) return el("span", { class: "pill off" }, sub.disabledReason ? `Disabled: ${sub.disabledReason}` : "Disabled");
    if (sub.failingSince) return el("span", { class: "pill warn" }, `Failing since ${when(sub.failingSince)}`);
    return el("span", { class: "pill on" }, "Active");
  }

  // A button that asks once more before it acts.
  function confirmed(label, question, action, cls) {
    const button = el("button", { type: "button", class: cls || "" }, label);
    let armed = false;
    button.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        button.textContent = question;
        setTimeout(() => { armed = false; button.textContent = label; }, 4000);
        return;
      }
      armed = false;
      button.textContent = label;
      await action();
    });
    return button;
  }

  async function act(what, run) {
    try {
      const done = await run();
      if (what) say(what);
      return done;
    } catch (error) {
      if (error.status === 401) return expired();
      say(`Could not ${(what || "load").toLowerCase()}: ${error.message}`);
    }
  }

  function attemptView(a) {
    return el("div", { class: "attempt" },
      el("div", {}, `Attempt ${a.attempt} · ${when(a.attemptedAt)} · `,
        el("b", { class: a.statusCode >= 200 && a.statusCode < 300 ? "succeeded" : "failed" }, a.statusCode ? `HTTP ${a.statusCode}` : a.error || "no answer"),
        ` · ${a.latencyMs} ms`),
      a.responseBody ? el("pre", {}, a.responseBody) : null);
  }

  function deliveryView(d, reload) {
    const cls = { SUCCEEDED: "succeeded", FAILED: "failed", PENDING: "pending" }[d.status] || "muted";
    return el("details", {},
      el("summary", {}, el("b", {}, d.eventType), el("span", { class: cls }, d.status.toLowerCase()),
        el("span", { class: "when" }, `${when(d.createdAt)} · ${d.attemptCount} attempt${d.attemptCount === 1 ? "" : "s"}`)),
      el("div", { class: "muted" }, `Event ${d.eventId}`),
      d.nextAttemptAt ? el("div", { class: "muted" }, `Next attempt ${when(d.nextAttemptAt)}`) : null,
      ...d.attempts.map(attemptView),
      el("div", { class: "actions delivery-actions" },
        el("button", { type: "button", onclick: () => act("Retry queued", () => api("POST", `deliveries/${d.id}/retry`)).then(reload) }, "Retry now")));
  }

  function subscriptionView(sub, refresh) {
    const panel = el("div", { class: "deliveries", hidden: "" });
    async function showDeliveries() {
      const page = await act(null, () => api("GET", `webhooks/${sub.id}/deliveries?size=25`));
      if (!page) return;
      panel.replaceChildren(...(page.items.length ? page.items.map((d) => deliveryView(d, showDeliveries))
        : [el("p", { class: "muted" }, "No deliveries yet.")]));
    }
    const toggle = el("button", { type: "button", "aria-expanded": "false" }, "Deliveries");
    toggle.addEventListener("click", async () => {
      const open = panel.hidden;
      panel.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      if (open) await showDeliveries();
    });
    const secret = el("span", { class: "secret" }, "••••••••");
    const showSecret = el("button", { type: "button" }, "Show signing secret");
    showSecret.addEventListener("click", () => {
      const shown = secret.textContent === sub.secret;
      secret.textContent = shown ? "••••••••" : sub.secret;
      showSecret.textContent = shown ? "Show signing secret" : "Hide signing secret";
    });
    const since = el("input", { type: "datetime-local", id: `since-${sub.id}` });
    const dayAgo = new Date(Date.now() - 24 * 3600 * 1000 - new Date().getTimezoneOffset() * 60000);
    since.value = dayAgo.toISOString().slice(0, 16);
    const c = sub.lastDay;
    return el("article", { class: "card", "aria-labelledby": `name-${sub.id}` },
      el("div", { class: "sub-head" }, el("h3", { id: `name-${sub.id}` }, sub.name), status(sub)),
      el("p", { class: "url" }, sub.url),
      el("p", { class: "counts" }, el("span", {}, "Last 24 h:"),
        el("span", { class: "succeeded" }, `${c.succeeded} succeeded`), el("span", { class: "failed" }, `${c.failed} failed`),
        el("span", { class: "pending" }, `${c.pending} pending`)),
      el("p", { class: "muted" }, `Signing (${sub.signing}): `, secret),
      el("div", { class: "actions" },
        toggle,
        el("button", { type: "button", class: "primary", disabled: sub.active ? null : "",
          onclick: () => act("Test event sent", () => api("POST", `webhooks/${sub.id}/test`, {})) }, "Send test event"),
        showSecret,
        confirmed("Rotate secret", "Rotate? Click again", () => act("Secret rotated; the old one signs for 24 hours more",
          () => api("POST", `webhooks/${sub.id}/rotateSecret`, {})).then(refresh)),
        sub.active
          ? confirmed("Disable", "Disable? Click again", () => act("Disabled", () => api("POST", `webhooks/${sub.id}/active`, { active: false })).then(refresh), "danger")
          : el("button", { type: "button", onclick: () => act("Enabled", () => api("POST", `webhooks/${sub.id}/active`, { active: true })).then(refresh) }, "Enable")),
      el("div", { class: "recover" },
        el("label", { for: since.id }, "Resend failed deliveries since", since),
        el("button", { type: "button", onclick: async () => {
          const iso = new Date(since.value).toISOString().slice(0, 19) + "Z";
          const done = await act("Resent", () => api("POST", `webhooks/${sub.id}/recover`, { since: iso }));
          if (done) say(`${done.recovered} failed ${done.recovered === 1 ? "delivery" : "deliveries"} resent`);
        } }, "Resend")),
      panel);
  }

  async function load() {
    if (!token) return expired();
    let overview;
    try {
      overview = await api("GET", "overview");
    } catch (error) {
      return error.status === 401 ? expired() : main.replaceChildren(el("p", { role: "alert" }, error.message));
    }
    const mode = overview.mode === "PRODUCTION" ? "Production" : "Sandbox";
    document.getElementById("session").textContent = `${mode} · this link works until ${when(overview.expiresAt)}`;
    const subs = overview.subscriptions.map((s) => subscriptionView(s, load));
    main.replaceChildren(chart(overview),
      el("h2", { class: "section-title" }, `Endpoints (${subs.length})`),
      ...(subs.length ? subs : [el("p", { class: "muted" }, "No endpoints yet.")]));
  }
  load();
})();
