// The coach dashboard: sign-in, the feed, the client list, one client's history, live refresh.
// Everything a member typed (labels, names, messages) is put in the page with textContent,
// never as HTML. Every request goes to this page's own origin, under the session cookie.

import {
  SORTS,
  addDays,
  channelText,
  clockTime,
  daysBetween,
  daysToNextMilestone,
  feedItem,
  longDate,
  milestonesReached,
  normaliseClients,
  parseDay,
  pausedDays,
  reasonText,
  relativeDay,
  reportsByDay,
  runsOf,
  shortDate,
  slipsOf,
  urgeLevel,
  urgeTrend,
  visibleClients,
  weekday,
} from "./model.js";

const params = new URLSearchParams(location.search);
// How often the page asks for news. Polling (not server-sent events) because the API runs
// under gunicorn's sync workers, where a held-open stream per coach would starve requests.
const REFRESH_MS = Math.max(Number(params.get("refresh")) || 5, 1) * 1000;
const PREFERENCES = "nocontact.dashboard.view";

const state = {
  session: null, // {role, coach_id, expires_at}
  clients: [],
  highUrge: 8,
  cards: new Map(), // memberId -> {signature, node}
  timer: null,
  detail: null, // commitment id shown in the detail view
  detailSignature: null,
  feedSignature: null,
  feedExpanded: false,
  summarySignature: null,
  tableSignature: null,
  note: null, // {memberId, version} of the note open in the detail view
  loadedAt: null, // when the service last answered
  filter: "all",
  query: "",
  sort: "risk",
  view: localStorage.getItem(PREFERENCES) === "table" ? "table" : "cards",
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(typeof child === "string" ? document.createTextNode(child) : child);
  return node;
}

// -- talking to the service -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** A request to this origin; a failure carries the service's own problem detail. */
async function api(path, { method = "GET", body = undefined, credential = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    // Writes carry this header (and JSON): the service refuses writes without it (CSRF).
    headers["X-Nocontact-Dashboard"] = "1";
    headers["Content-Type"] = "application/json";
  }
  if (credential) headers.Authorization = `Bearer ${credential}`;
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "the service does not answer");
  }
  if (response.status === 204) return null;
  const json = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, json?.detail || `${response.status} ${response.statusText}`);
  return json;
}

// -- signing in ---------------------------------------------------------------------------------

async function boot() {
  // A sign-in link (/dashboard#link=…) or a token link (#token=…&coach=…) signs this browser
  // in once; the secret then leaves the address bar so it is not bookmarked or shared.
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const link = hash.get("link");
  const token = hash.get("token");
  if (link || token) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      if (link) await api("/dashboard/session", { method: "POST", body: { link } });
      else await api("/dashboard/session", { method: "POST", body: hash.get("coach") ? { coach_id: hash.get("coach") } : {}, credential: token });
    } catch (error) {
      return showSignIn(signInMessage(error));
    }
  }
  try {
    state.session = await api("/dashboard/api/session");
  } catch (error) {
    if (error.status === 0) return showSignIn("The service does not answer. Try again in a moment.");
    return showSignIn(error.message === "not signed in" ? null : signInMessage(error));
  }
  start();
}

function signInMessage(error) {
  if (error.status === 403) return `Not allowed: ${error.message}.`;
  if (error.status === 0) return "The service does not answer. Try again in a moment.";
  // The service says why (not valid, expired, revoked, already used): shown as said.
  return `Could not sign in: ${error.message}.`;
}

function reset() {
  stopPolling();
  state.session = null;
  state.clients = [];
  state.cards.clear();
  state.detailSignature = state.feedSignature = state.summarySignature = state.tableSignature = null;
  $("clients").replaceChildren();
  $("table-wrap").replaceChildren();
  for (const id of ["sos-items", "feed-items", "feed-seen"]) $(id).replaceChildren();
  $("sos").hidden = true;
}

function showSignIn(message) {
  reset();
  for (const id of ["overview", "detail", "who", "live", "error", "offline"]) $(id).hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("token").focus();
}

function onTokenInput() {
  // An API key cannot name a coach: ask for one. (The service decides; this only shapes the form.)
  $("coach-field").hidden = !$("token").value.trim().startsWith("nck_");
}

async function onSignIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  const coachId = $("coach-id").value.trim();
  try {
    await api("/dashboard/session", { method: "POST", body: coachId ? { coach_id: coachId } : {}, credential: token });
    state.session = await api("/dashboard/api/session");
  } catch (error) {
    const message = signInMessage(error);
    showSignIn(message);
    if (error.status === 422) $("coach-field").hidden = false;
    return;
  }
  $("token").value = "";
  start();
}

async function onSignOut() {
  try {
    await api("/dashboard/session", { method: "DELETE" });
  } catch {
    /* signed out here anyway; the server forgets nothing it had not been told */
  }
  showSignIn(null);
}

function start() {
  $("sign-in").hidden = true;
  $("who").hidden = false;
  const { role, coach_id: coach } = state.session;
  $("who-text").textContent = role === "coach" ? `Coach ${coach}` : `Admin · viewing coach ${coach}`;
  route();
}

// -- live refresh ---------------------------------------------------------------------------------

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
}

function schedule() {
  stopPolling();
  if (!document.hidden) state.timer = setTimeout(refresh, REFRESH_MS);
}

function setLive(ok, text) {
  $("live").hidden = false;
  $("live").classList.toggle("offline", !ok);
  $("live-text").textContent = text;
}

async function refresh() {
  if (!state.session) return;
  try {
    if (state.detail) await loadDetail(state.detail);
    else await Promise.all([loadOverview(), loadFeed()]);
    state.loadedAt = new Date();
    setLive(true, `Live · updated ${clockTime(state.loadedAt)}`);
    $("error").hidden = true;
    $("offline").hidden = true;
  } catch (error) {
    if (!(error instanceof ApiError)) {
      schedule();
      throw error; // a bug of the page, not the service's trouble: let it show as one
    }
    // The session ended (signed out in another tab, expired, its key revoked): said as the service says it.
    if (error.status === 401) {
      // No cookie any more: this browser signed out (another tab did).
      if (error.message === "not signed in") return showSignIn("You are signed out.");
      return showSignIn(`${error.message.charAt(0).toUpperCase()}${error.message.slice(1)}.`);
    }
    if (error.status === 403) return showSignIn(signInMessage(error));
    const asOf = state.loadedAt ? `as of ${clockTime(state.loadedAt)}` : "nothing loaded yet";
    // One banner at a time: the latest trouble, not a stack of past ones.
    $("error").hidden = error.status === 0;
    $("offline").hidden = error.status !== 0;
    if (error.status === 0) {
      setLive(false, "Offline · retrying");
      $("offline").textContent = `Offline: the service does not answer. What you see is ${asOf}; retrying every ${REFRESH_MS / 1000} s.`;
    } else {
      setLive(false, "Trouble loading · retrying");
      $("error").textContent = `Could not load (${error.status}): ${error.message}. What you see is ${asOf}.`;
    }
  }
  schedule();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) stopPolling();
  else if (state.session) refresh();
});

// -- the feed ------------------------------------------------------------------------------------------

async function loadFeed() {
  let body;
  try {
    body = await api("/dashboard/api/feed");
  } catch (error) {
    if (error.status === 401 || error.status === 403 || error.status === 0) throw error;
    // The feed is another service's: when it cannot be had, the clients still show.
    state.feedSignature = null;
    $("feed-state").textContent = `The feed cannot be shown now: ${error.message}.`;
    return;
  }
  const items = body.items.map(feedItem);
  const signature = JSON.stringify(items);
  if (signature === state.feedSignature) return;
  state.feedSignature = signature;
  renderFeed(items);
}

function clientName(memberId) {
  return state.clients.find((c) => c.memberId === memberId)?.name || memberId;
}

const FEED_SHOWN = 6; // new items shown before "Show all": the clients stay in sight

function renderFeed(items) {
  // Pinned SOS calls above everything; then what is new (not acknowledged), newest first,
  // as the service orders them; then, folded away, what was acknowledged.
  const pinned = items.filter((i) => i.pinned);
  const fresh = items.filter((i) => !i.pinned && !i.acknowledged);
  const seen = items.filter((i) => !i.pinned && i.acknowledged);
  $("sos").hidden = pinned.length === 0;
  $("sos-items").replaceChildren(...pinned.map(feedEntry));
  $("feed-state").textContent = fresh.length ? `${fresh.length} new` : "Nothing new. You are up to date.";
  const shown = state.feedExpanded ? fresh : fresh.slice(0, FEED_SHOWN);
  $("feed-items").replaceChildren(...shown.map(feedEntry));
  $("feed-more").hidden = fresh.length <= FEED_SHOWN;
  $("feed-more").setAttribute("aria-expanded", String(state.feedExpanded));
  $("feed-more").textContent = state.feedExpanded ? "Show fewer" : `Show all ${fresh.length} new`;
  $("feed-seen").replaceChildren(...seen.map(feedEntry));
  $("feed-seen-wrap").hidden = seen.length === 0;
  $("feed-seen-title").textContent = `Acknowledged (${seen.length})`;
}

function feedEntry(item) {
  const when = new Date(item.occurredAt);
  const name = clientName(item.memberId);
  return el(
    "li",
    { class: `feed-item ${item.kind}${item.pinned ? " pinned" : ""}`, "data-item": item.id, "data-kind": item.kind },
    el("div", { class: "feed-what" },
      item.kind === "sos" ? el("span", { class: "sos-badge", text: "SOS" }) : null,
      el("b", { class: "feed-who", text: name }),
      el("span", { class: "feed-text", text: ` ${item.kind === "sos" ? "asked for help now" : item.text}` })),
    item.message ? el("p", { class: "feed-message", text: item.message }) : null,
    el("div", { class: "feed-meta" },
      el("time", { datetime: item.occurredAt, text: `${when.toLocaleDateString("en-GB", { day: "numeric", month: "short" })} ${clockTime(when)}` }),
      item.commitmentId ? el("a", { href: `#/c/${encodeURIComponent(item.commitmentId)}`, text: "Open" },
        el("span", { class: "visually-hidden", text: ` ${name}'s history` })) : null,
      item.acknowledged
        ? el("span", { class: "muted", text: "acknowledged" })
        : el("button", { type: "button", class: "ack", "data-ack": item.id, "aria-label": `Acknowledge: ${name}, ${item.text}` }, "Acknowledge")),
  );
}

async function onFeedClick(event) {
  if (event.target.closest("#feed-more")) {
    state.feedExpanded = !state.feedExpanded;
    state.feedSignature = null;
    return loadFeed();
  }
  const button = event.target.closest("button[data-ack]");
  if (!button) return;
  button.disabled = true;
  try {
    await api(`/dashboard/api/feed/${button.dataset.ack}/acknowledge`, { method: "POST", body: {} });
    await loadFeed();
    $("feed-title").focus();
  } catch (error) {
    button.disabled = false;
    $("error").hidden = false;
    $("error").textContent = `Could not acknowledge (${error.status}): ${error.message}.`;
  }
}

// -- the overview ---------------------------------------------------------------------------------

async function loadOverview() {
  const body = await api("/dashboard/api/clients");
  state.highUrge = body.at_risk.high_urge;
  state.clients = normaliseClients(body);
  renderOverview();
}

function summaryChip(filter, count, text) {
  return el("button", { type: "button", class: `chip-filter${filter === "at_risk" && count ? " warn" : ""}`,
    "data-filter": filter, "aria-pressed": String(state.filter === filter) }, el("b", { text: count }), ` ${text}`);
}

function renderOverview() {
  const clients = state.clients;
  $("overview").hidden = false;
  $("detail").hidden = true;
  const atRisk = clients.filter((c) => c.atRisk).length;
  const notToday = clients.filter((c) => c.hasActive && !c.checkedInToday).length;
  // Every number of the summary counts clients (never commitments). Redrawn only when it
  // changed: a poll must not take the keyboard focus away from a chip.
  const summary = JSON.stringify([clients.length, atRisk, notToday, state.filter]);
  if (summary !== state.summarySignature) {
    state.summarySignature = summary;
    const focused = document.activeElement?.dataset?.filter;
    $("summary").replaceChildren(
      summaryChip("all", clients.length, `client${clients.length === 1 ? "" : "s"}`),
      summaryChip("at_risk", atRisk, "at risk"),
      summaryChip("not_today", notToday, "not checked in today"),
    );
    if (focused) $("summary").querySelector(`[data-filter="${focused}"]`)?.focus();
  }
  $("empty").hidden = clients.length > 0;
  const shown = visibleClients(clients, state);
  $("count").textContent = shown.length === clients.length ? "" : `Showing ${shown.length} of ${clients.length} clients.`;
  $("clients").hidden = state.view !== "cards";
  $("table-wrap").hidden = state.view !== "table";
  $("view-cards").setAttribute("aria-pressed", String(state.view === "cards"));
  $("view-table").setAttribute("aria-pressed", String(state.view === "table"));
  if (state.view === "table") renderTable(shown);
  else renderCards(shown);
}

function renderCards(clients) {
  const list = $("clients");
  const seen = new Set();
  const nodes = clients.map((client) => {
    seen.add(client.memberId);
    const signature = JSON.stringify([client, state.highUrge]);
    const known = state.cards.get(client.memberId);
    if (known && known.signature === signature) return known.node;
    const node = clientCard(client);
    if (known) {
      // Something changed since the last look: a short highlight says where.
      node.classList.add("fresh");
      setTimeout(() => node.classList.remove("fresh"), 4000);
    }
    state.cards.set(client.memberId, { signature, node });
    return node;
  });
  for (const id of [...state.cards.keys()]) if (!state.clients.some((c) => c.memberId === id)) state.cards.delete(id);
  nodes.forEach((node, i) => {
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
  });
  while (list.children.length > nodes.length) list.lastElementChild.remove();
}

function renderTable(clients) {
  // Redrawn only when what it shows changed (a poll must not take the focus from a link).
  const signature = JSON.stringify([clients, state.highUrge]);
  if (signature === state.tableSignature && $("table-wrap").firstChild) return;
  state.tableSignature = signature;
  const head = ["Client", "Contact", "Streak", "Last check-in", "Urge", "Risk"];
  const rows = clients.flatMap((client) =>
    client.commitments.map((c, i) => {
      const last = c.urges[c.urges.length - 1];
      const level = last ? urgeLevel(last.value, state.highUrge) : null;
      return el(
        "tr",
        { class: client.atRisk ? "at-risk" : null, "data-member": client.memberId, "data-commitment": c.commitmentId },
        i === 0
          ? el("th", { scope: "row", rowspan: client.commitments.length }, el("span", { class: "name", text: client.name }),
              client.displayName ? el("span", { class: "id muted", text: ` ${client.memberId}` }) : null)
          : null,
        el("td", {}, el("a", { href: `#/c/${encodeURIComponent(c.commitmentId)}`, text: c.label })),
        el("td", { class: "num", text: `${c.current} d` }),
        el("td", { text: relativeDay(c.lastCheckIn, c.today) }),
        el("td", { class: level ? `urge-${level}` : null, text: last ? `${last.value}/10${level === "high" ? " high" : ""}` : "–" }),
        el("td", { text: c.reasons.length ? c.reasons.map((r) => reasonText(r, c)).join("; ") : "–" }),
      );
    }),
  );
  $("table-wrap").replaceChildren(
    el("table", { class: "compact", "aria-label": "Clients" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows)),
  );
}

function riskFlag() {
  return el("span", { class: "flag" }, el("span", { class: "flag-icon", "aria-hidden": "true", text: "!" }), "At risk");
}

function clientCard(client) {
  const heading = `client-${client.memberId}`;
  return el(
    "li",
    { class: `client${client.atRisk ? " at-risk" : ""}`, "data-member": client.memberId },
    el(
      "article",
      { "aria-labelledby": heading },
      el("header", { class: "client-head" },
        el("h2", { id: heading }, el("span", { class: "name", text: client.name }),
          client.displayName ? el("span", { class: "id", text: client.memberId }) : null),
        client.atRisk ? riskFlag() : null),
      client.commitments.map((c) => commitmentBlock(c, client)),
    ),
  );
}

function commitmentBlock(c, client) {
  const toNext = daysToNextMilestone(c);
  return el(
    "section",
    { class: "commitment", "data-commitment": c.commitmentId },
    el(
      "div",
      { class: "contact" },
      el("span", { class: "label", text: c.label }),
      c.relationship ? el("span", { class: "chip", text: c.relationship }) : null,
      c.status !== "active" ? el("span", { class: "chip status", text: c.status }) : null,
    ),
    c.reasons.length
      ? el(
          "p",
          { class: "reasons" },
          el("span", { class: "visually-hidden", text: "At risk: " }),
          c.reasons.map((r) => el("span", { class: "reason", "data-reason": r.code, text: reasonText(r, c) })),
        )
      : null,
    el(
      "dl",
      { class: "numbers" },
      el("div", { class: "big" }, el("dt", { text: "Streak" }), el("dd", { class: "streak-current" }, el("b", { text: c.current }), ` day${c.current === 1 ? "" : "s"}`)),
      el("div", {}, el("dt", { text: "Longest" }), el("dd", { class: "streak-longest", text: `${c.longest} d` })),
      el(
        "div",
        {},
        el("dt", { text: "Next milestone" }),
        el("dd", { class: "next-milestone", text: toNext === null ? "all reached" : `${c.nextMilestone} d · ${toNext} to go` }),
      ),
      el("div", {}, el("dt", { text: "Last check-in" }), el("dd", { class: "last-check-in", title: c.lastCheckIn || "", text: relativeDay(c.lastCheckIn, c.today) })),
    ),
    strip(c),
    sparkline(c.urges),
    el("a", { class: "more", href: `#/c/${encodeURIComponent(c.commitmentId)}` }, "Full history", el("span", { class: "visually-hidden", text: ` of ${client.name} with ${c.label}` }), " →"),
  );
}

const STATE_TEXT = { kept: "kept", slipped: "slipped", unreported: "not reported", excused: "paused (excused)" };

function dayCell(day, today) {
  const isToday = day.date === today;
  const label = `${longDate(day.date)}${isToday ? " (today)" : ""}: ${STATE_TEXT[day.state]}`;
  return el("li", {
    class: `day ${day.state}${isToday ? " today" : ""}`,
    title: label,
    "aria-label": label,
    "data-date": day.date,
    "data-state": day.state,
  });
}

function strip(c) {
  const count = (state) => c.days.filter((d) => d.state === state).length;
  const excused = count("excused");
  // Younger commitments are padded on the left so every card shares one 30-day axis.
  const pad = c.days.length ? Math.max(30 - c.days.length, 0) : 0;
  const first = c.days.length ? addDays(c.days[0].date, -pad) : null;
  const blanks = Array.from({ length: pad }, () => el("li", { class: "day none", "aria-hidden": "true" }));
  return el(
    "figure",
    { class: "strip-wrap" },
    el(
      "figcaption",
      { class: "visually-hidden" },
      `Last ${c.days.length} days: ${count("kept")} kept, ${count("slipped")} slipped, ${count("unreported")} not reported${excused ? `, ${excused} paused` : ""}.`,
    ),
    el("ol", { class: "strip", "aria-label": `Last ${c.days.length} days` }, blanks, c.days.map((d) => dayCell(d, c.today))),
    el("div", { class: "strip-scale", "aria-hidden": "true" }, el("span", { text: first ? shortDate(first) : "" }), el("span", { text: "today" })),
  );
}

const TREND_TEXT = { rising: "↑ rising", falling: "↓ falling", steady: "→ steady" };

function sparkline(urges) {
  if (!urges.length) return el("div", { class: "urges none" }, el("span", { class: "k", text: "Urges" }), el("span", { class: "muted", text: "none reported" }));
  const w = 120;
  const h = 30;
  const x = (i) => (urges.length === 1 ? w / 2 : (i * w) / (urges.length - 1));
  const y = (v) => h - 2 - (v / 10) * (h - 4);
  const points = urges.map((u, i) => `${x(i).toFixed(1)},${y(u.value).toFixed(1)}`).join(" ");
  const last = urges[urges.length - 1];
  const trend = urgeTrend(urges);
  // The level of the latest urge against the tenant's own threshold: an 8/10 is never "calm".
  const level = urgeLevel(last.value, state.highUrge);
  const values = urges.map((u) => u.value).join(", ");
  return el(
    "div",
    { class: `urges ${trend} level-${level}`, "data-level": level },
    el("span", { class: "k", text: "Urges" }),
    svg(
      "svg",
      { viewBox: `-3 -3 ${w + 6} ${h + 6}`, class: "spark", role: "img", "aria-label": `Urge levels of the last ${urges.length} check-ins, out of 10: ${values}; latest ${level}, ${trend}` },
      svg("line", { x1: 0, x2: w, y1: y(state.highUrge), y2: y(state.highUrge), class: "spark-high" }),
      svg("polyline", { points, class: "spark-line" }),
      svg("circle", { cx: x(urges.length - 1), cy: y(last.value), r: 3, class: "spark-last" }),
    ),
    el("span", { class: "latest" }, el("b", { text: last.value }), "/10 ",
      level === "high" ? el("span", { class: "level high", text: "high " }) : null,
      el("span", { class: `trend ${trend}`, text: TREND_TEXT[trend] })),
  );
}

// -- the detail view ---------------------------------------------------------------------------------

async function loadDetail(id) {
  const body = await api(`/dashboard/api/commitments/${encodeURIComponent(id)}`);
  const reports = reportsByDay(body.check_ins);
  const runs = runsOf(body.runs);
  const model = {
    commitment: body.commitment,
    name: body.profile?.display_name || null,
    streak: body.streak,
    reports,
    today: body.streak.as_of,
    startsOn: body.commitment.starts_on,
    highUrge: body.at_risk.high_urge,
    logged: body.urges.map((u) => ({ ...u, date: localDay(u.at, body.commitment.timezone) })),
    paused: [...pausedDays(body.pauses)],
    // That and when an SOS was sent, on the client's day: never its message (the feed's alone).
    sos: body.sos.map((s) => ({ date: localDay(s.sent_at, body.commitment.timezone), time: localTime(s.sent_at, body.commitment.timezone) })),
    past: { runs, slips: slipsOf(reports), reached: milestonesReached(runs) },
  };
  const signature = JSON.stringify(model);
  if (signature === state.detailSignature) return;
  const first = state.detailSignature === null;
  state.detailSignature = signature;
  renderDetail(model, first);
}

const RELATION = { romantic: "romantic", family: "family", friend: "friend", professional: "professional", other: "other" };

/** The member's calendar day of an instant (their zone: the day the service counts it on). */
function localDay(instant, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(instant));
}

/** hh:mm of an instant on the member's clock. */
function localTime(instant, timeZone) {
  return new Date(instant).toLocaleTimeString("en-GB", { timeZone, hour: "2-digit", minute: "2-digit" });
}

const URGE_OUTCOME = { passed: "passed", reached_out: "reached out", ongoing: "still there" };

function urgesTable(logged, timeZone) {
  const when = (instant) => new Date(instant).toLocaleString("en-GB", { timeZone, weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  return el(
    "section",
    { class: "table-block" },
    el("h2", { text: `Urges logged between check-ins (${logged.length})` }),
    logged.length
      ? el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": "Urges logged between check-ins" },
          el("table", { class: "urges-logged" },
            // Level, time and outcome: the member's own words (trigger, coping, note) stay theirs.
            el("thead", {}, el("tr", {}, ["When (client's time)", "Intensity", "Outcome"].map((h) => el("th", { scope: "col", text: h })))),
            el("tbody", {}, logged.map((u) => el("tr", { class: u.outcome === "reached_out" ? "reached-out" : null },
              el("td", { text: when(u.at) }),
              el("td", { text: `${u.intensity}/10` }),
              el("td", { text: URGE_OUTCOME[u.outcome] || u.outcome }))))))
      : el("p", { class: "muted", text: "None logged." }),
  );
}

function renderDetail({ commitment: c, name, streak, reports, today, startsOn, highUrge, logged, paused, sos, past }, first) {
  $("overview").hidden = true;
  $("detail").hidden = false;
  const body = el(
    "article",
    { class: "detail" },
    el(
      "header",
      { class: "detail-head" },
      el("h1", { id: "detail-title", tabindex: "-1" }, el("span", { text: name || c.member_id }), el("span", { class: "sep", text: " · " }),
        el("span", { class: "label", text: c.contact_label }), RELATION[c.relationship] ? el("span", { class: "chip", text: RELATION[c.relationship] }) : null),
      el("p", { class: "muted" },
        "Member id ", el("code", { class: "member-id", text: c.member_id }),
        ` · since ${longDate(startsOn)} · ${c.timezone}${c.status !== "active" ? ` · ${c.status}` : ""}`),
    ),
    el(
      "dl",
      { class: "numbers wide" },
      el("div", { class: "big" }, el("dt", { text: "Current streak" }), el("dd", { class: "streak-current" }, el("b", { text: streak.current_days }), " days")),
      el("div", {}, el("dt", { text: "Longest" }), el("dd", { text: `${streak.longest_days} days` })),
      el("div", {}, el("dt", { text: "Kept" }), el("dd", { text: streak.kept_days })),
      el("div", {}, el("dt", { text: "Slipped" }), el("dd", { text: streak.slipped_days })),
      el("div", {}, el("dt", { text: "Not reported" }), el("dd", { text: streak.unreported_days })),
      // Pauses (excused days) come with the between-check-ins work's streak figures.
      streak.excused_days !== undefined ? el("div", {}, el("dt", { text: "Paused" }), el("dd", { text: streak.excused_days })) : null,
      el("div", {}, el("dt", { text: "Last check-in" }), el("dd", { class: "last-check-in", text: relativeDay(streak.last_check_in_on, today) })),
      el("div", {}, el("dt", { text: "Next milestone" }), el("dd", { text: streak.next_milestone ? `${streak.next_milestone} days` : "all reached" })),
    ),
    el("h2", { text: "History" }),
    heatmap(reports, startsOn, today, new Set(paused), sos),
    el("h2", { text: "Urges and mood, day by day" }),
    el("div", { class: "charts" },
      lineChart({ reports, startsOn, today, field: "urge", max: 10, min: 0, title: "Urge to reach out", unit: "0 none – 10 overwhelming", mark: highUrge, cls: "urge-chart", logged }),
      lineChart({ reports, startsOn, today, field: "mood", max: 5, min: 1, title: "Mood", unit: "1 very low – 5 very good", mark: null, cls: "mood-chart" })),
    urgesTable(logged, c.timezone),
    el("div", { class: "columns" }, slipsTable(past.slips), runsTable(past.runs)),
    el("h2", { text: "Milestones reached" }),
    past.reached.length
      ? el("ol", { class: "milestones" }, past.reached.map((m) => el("li", {}, el("b", { text: `${m.threshold} day${m.threshold === 1 ? "" : "s"}` }), ` ${longDate(m.on)}`)))
      : el("p", { class: "muted", text: "None yet: the first one is one kept day away." }),
  );
  $("detail-body").replaceChildren(body);
  if (first) {
    $("detail-title").focus();
    loadNote(c.member_id);
  }
}

// -- the coach's private note on the client ------------------------------------------------------------

async function loadNote(memberId) {
  // An admin viewing a coach's dashboard has no notes: they are the coach's own.
  $("note").hidden = state.session.role !== "coach";
  if ($("note").hidden) return;
  state.note = { memberId, version: 0 };
  $("note-text").value = "";
  $("note-status").textContent = "Loading…";
  try {
    const note = await api(`/dashboard/api/members/${encodeURIComponent(memberId)}/note`);
    state.note.version = note.version;
    $("note-text").value = note.note;
    $("note-status").textContent = note.erased ? "The client's data was erased: the note cannot be read any more."
      : note.updated_at ? `Saved ${new Date(note.updated_at).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })}.` : "No note yet.";
  } catch (error) {
    $("note-status").textContent = `The note cannot be loaded: ${error.message}.`;
  }
}

async function onNoteSave() {
  const { memberId, version } = state.note;
  $("note-save").disabled = true;
  try {
    const saved = await api(`/dashboard/api/members/${encodeURIComponent(memberId)}/note`, {
      method: "PUT", body: { note: $("note-text").value, version } });
    state.note.version = saved.version;
    $("note-status").textContent = `Saved ${clockTime(new Date(saved.updated_at))}.`;
  } catch (error) {
    $("note-status").textContent = error.status === 412
      ? "The note was changed elsewhere (another tab?) since you opened it. Copy your text, then reload to see it."
      : `Not saved (${error.status}): ${error.message}.`;
  } finally {
    $("note-save").disabled = false;
  }
}

function heatmap(reports, startsOn, today, paused, sos) {
  // Whole weeks, Monday first, so that columns line up like a wall calendar.
  const from = addDays(startsOn, -weekday(startsOn));
  const weeks = Math.ceil((daysBetween(from, today) + 1) / 7);
  const sosOn = {};
  for (const call of sos) (sosOn[call.date] ||= []).push(call.time);
  const shown = { heldFirm: 0, paused: 0, sos: 0 };
  const columns = [];
  let lastMonth = null;
  let lastLabelled = -2;
  for (let w = 0; w < weeks; w += 1) {
    const cells = [];
    let month = null;
    const monthKey = addDays(from, w * 7 + 6).slice(0, 7); // the month most of the column belongs to
    if (monthKey !== lastMonth && w - lastLabelled > 1) {
      month = new Date(parseDay(`${monthKey}-01`)).toLocaleDateString("en-GB", { timeZone: "UTC", month: "short" });
      lastLabelled = w;
      lastMonth = monthKey;
    }
    for (let d = 0; d < 7; d += 1) {
      const date = addDays(from, w * 7 + d);
      if (date < startsOn || date > today) {
        cells.push(el("li", { class: "day none", "aria-hidden": "true" }));
        continue;
      }
      const report = reports[date];
      // A paused day nobody reported is excused (as the service counts it); a report stands over a pause.
      const cell = dayCell({ date, state: report ? report.outcome : paused.has(date) ? "excused" : "unreported" }, today);
      const notes = [];
      if (report && paused.has(date)) notes.push("during a pause");
      if (report && report.outcome === "kept" && report.attempts.length) {
        // Held firm: the other person reached out (these channels) and the client did not answer.
        const n = report.attempts.length;
        notes.push(`held firm against ${n} contact attempt${n === 1 ? "" : "s"} (${[...new Set(report.attempts.map(channelText))].join(", ")})`);
        cell.classList.add("held-firm");
        cell.dataset.heldFirm = "";
        shown.heldFirm += 1;
      }
      if (!report && paused.has(date)) shown.paused += 1;
      const calls = sosOn[date];
      if (calls) {
        notes.push(`SOS sent at ${calls.join(", ")} (client's time)`);
        cell.classList.add("sos");
        cell.dataset.sos = String(calls.length);
        shown.sos += calls.length;
      }
      if (report && report.urge !== null) notes.push(`urge ${report.urge}/10`);
      if (report && report.mood !== null) notes.push(`mood ${report.mood}/5`);
      cell.setAttribute("aria-label", [cell.getAttribute("aria-label"), ...notes].join(", "));
      cell.title = cell.getAttribute("aria-label");
      cells.push(cell);
    }
    columns.push(el("li", { class: "week" }, el("span", { class: "month", "aria-hidden": "true", text: month || "" }), el("ol", { class: "week-days" }, cells)));
  }
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  // Each kind of day has its own shape (solid, hatched, dashed, pause bars, a dot, a corner
  // flag) and words here and in every day's name: never colour alone.
  const key = (cls, text, count) => el("li", { "data-key": cls }, el("span", { class: `day ${cls}`, "aria-hidden": "true" }),
    el("span", {}, text, count === undefined ? null : el("span", { class: "key-count", text: ` · ${count}` })));
  return el(
    "figure",
    // Focusable: on a phone the calendar scrolls sideways within itself, by keyboard too.
    { class: "heatmap-wrap", tabindex: "0", "aria-label": "Calendar of every day" },
    el("div", { class: "weekdays", "aria-hidden": "true" }, ["Mon", "", "Wed", "", "Fri", "", "Sun"].map((d) => el("span", { text: d }))),
    el("ol", { class: "heatmap", "aria-label": `Every day since ${longDate(startsOn)}` }, columns),
    el("figcaption", { class: "heatmap-key" }, el("ul", {},
      key("kept", "kept"),
      key("kept held-firm", "held firm: reached out to, did not answer", plural(shown.heldFirm, "day", "days")),
      key("slipped", "slipped"),
      key("unreported", "not reported"),
      key("excused", "paused (excused)", plural(shown.paused, "day", "days")),
      key("unreported sos", "SOS sent", plural(shown.sos, "call", "calls")),
      key("kept today", "today"))),
  );
}

/** A day-by-day line chart of one reported value, with labelled axes and dates. */
function lineChart({ reports, startsOn, today, field, min, max, title, unit, mark, cls, logged = [] }) {
  const days = Object.keys(reports).filter((d) => d >= startsOn && d <= today && reports[d][field] !== null).sort();
  const figure = el("figure", { class: `chart ${cls}` }, el("figcaption", {}, el("b", { text: title }), ` (${unit})`));
  if (!days.length) {
    figure.append(el("p", { class: "muted", text: "None reported yet." }));
    return figure;
  }
  const W = 560;
  const H = 170;
  const left = 34;
  const bottom = 28;
  const top = 8;
  const right = 10;
  const span = Math.max(daysBetween(startsOn, today), 1);
  const x = (date) => left + (daysBetween(startsOn, date) / span) * (W - left - right);
  const y = (v) => top + (1 - (v - min) / (max - min)) * (H - top - bottom);
  const values = days.map((d) => reports[d][field]);
  const points = days.map((d) => `${x(d).toFixed(1)},${y(reports[d][field]).toFixed(1)}`).join(" ");
  const ticks = [];
  for (let v = min; v <= max; v += max - min > 5 ? 2 : 1) ticks.push(v);
  // Dates on the x axis: the first day, today and up to three between, evenly spread.
  const dateTicks = [...new Set([0, 0.25, 0.5, 0.75, 1].map((f) => addDays(startsOn, Math.round(f * span))))];
  const slipped = days.filter((d) => reports[d].outcome === "slipped");
  // Urges logged between check-ins: triangles on their day, beside the daily line.
  const between = logged.filter((u) => u.date >= startsOn && u.date <= today);
  const recent = values.slice(-7);
  const average = (recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(1);
  figure.append(
    svg(
      "svg",
      { viewBox: `0 0 ${W} ${H}`, role: "img", class: "line-chart",
        "aria-label": `${title} on ${days.length} days from ${longDate(days[0])} to ${longDate(days[days.length - 1])}: ${values.join(", ")}; average of the last ${recent.length}: ${average}` },
      ...ticks.map((v) => svg("g", { class: "tick" },
        svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }),
        svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)))),
      ...dateTicks.map((d) => svg("text", { x: x(d), y: H - 8, "text-anchor": d === startsOn ? "start" : d === today ? "end" : "middle", class: "date" }, d === today ? "today" : shortDate(d))),
      svg("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }),
      svg("line", { x1: left, x2: left, y1: top, y2: H - bottom, class: "axis" }),
      mark !== null ? svg("line", { x1: left, x2: W - right, y1: y(mark), y2: y(mark), class: "spark-high" }) : null,
      svg("polyline", { points, class: "spark-line" }),
      ...days.map((d) => svg("circle", { cx: x(d), cy: y(reports[d][field]), r: 2.5, class: reports[d].outcome === "slipped" ? "dot slipped" : "dot" },
        svg("title", {}, `${longDate(d)}: ${reports[d][field]}${reports[d].outcome === "slipped" ? " (slipped)" : ""}`))),
      ...between.map((u) => svg("path", { d: `M${x(u.date).toFixed(1)},${(y(u.intensity) - 5).toFixed(1)} l5,9 h-10 z`, class: "logged" },
        svg("title", {}, `${longDate(u.date)}: urge logged, ${u.intensity}/10, ${URGE_OUTCOME[u.outcome] || u.outcome}`))),
    ),
    el("p", { class: "muted chart-note", text: `Average of the last ${recent.length}: ${average}.${slipped.length ? " Filled dots: slipped days." : ""}${between.length ? " Triangles: urges logged between check-ins." : ""}` }),
  );
  return figure;
}

function slipsTable(slips) {
  return el(
    "section",
    { class: "table-block" },
    el("h2", { text: `Slips (${slips.length})` }),
    slips.length
      ? el(
          "table",
          { class: "slips" },
          el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Day" }), el("th", { scope: "col", text: "Channel" }), el("th", { scope: "col", text: "Who reached out" }), el("th", { scope: "col", text: "Urge" }))),
          el(
            "tbody",
            {},
            [...slips].reverse().map((s) =>
              el(
                "tr",
                {},
                el("td", { text: longDate(s.date) }),
                el("td", { text: channelText(s.channel) }),
                el("td", { text: s.initiatedBy === "me" ? "the client" : s.initiatedBy === "them" ? "the other person" : "not said" }),
                el("td", { text: s.urge ?? "–" }),
              ),
            ),
          ),
        )
      : el("p", { class: "muted", text: "No slips. Every reported day was kept." }),
  );
}

const ENDED_BY = { slip: "a slip the next day", unreported: "an unreported day next", commitment_end: "the commitment ended" };

function runsTable(runs) {
  return el(
    "section",
    { class: "table-block" },
    el("h2", { text: "Runs" }),
    runs.length
      ? el(
          "table",
          { class: "runs" },
          el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Start" }), el("th", { scope: "col", text: "End" }), el("th", { scope: "col", text: "Length" }))),
          el(
            "tbody",
            {},
            [...runs].reverse().map((r) =>
              el(
                "tr",
                { class: r.endedBy ? null : "current" },
                el("td", { text: longDate(r.start) }),
                el("td", { text: r.endedBy ? `${longDate(r.end)} (${ENDED_BY[r.endedBy] || r.endedBy})` : "ongoing" }),
                el("td", {}, el("b", { text: r.length }), ` day${r.length === 1 ? "" : "s"}`),
              ),
            ),
          ),
        )
      : el("p", { class: "muted", text: "No counted days yet." }),
  );
}

// -- the coach's choices: filter, search, sort, view ------------------------------------------------

function setupTools() {
  $("sort").replaceChildren(...Object.entries(SORTS).map(([value, text]) => el("option", { value, text })));
  $("sort").value = state.sort;
  $("summary").addEventListener("click", (event) => {
    const chip = event.target.closest("button[data-filter]");
    if (!chip) return;
    state.filter = chip.dataset.filter === state.filter ? "all" : chip.dataset.filter;
    renderOverview();
  });
  $("search").addEventListener("input", () => {
    state.query = $("search").value;
    renderOverview();
  });
  $("sort").addEventListener("change", () => {
    state.sort = $("sort").value;
    renderOverview();
  });
  for (const view of ["cards", "table"]) {
    $(`view-${view}`).addEventListener("click", () => {
      state.view = view;
      localStorage.setItem(PREFERENCES, view);
      renderOverview();
    });
  }
}

// -- routing -------------------------------------------------------------------------------------------

function route() {
  const match = location.hash.match(/^#\/c\/(.+)$/);
  const detail = match ? decodeURIComponent(match[1]) : null;
  if (detail !== state.detail) state.detailSignature = null;
  state.detail = detail;
  if (!detail) {
    $("detail").hidden = true;
    if (state.clients.length) renderOverview();
  }
  refresh();
}

window.addEventListener("hashchange", () => {
  if (/^#(token|link)=/.test(location.hash)) {
    // A sign-in link opened in a tab that already shows the page.
    reset();
    boot();
  } else if (state.session) route();
});
$("sign-in-form").addEventListener("submit", onSignIn);
$("token").addEventListener("input", onTokenInput);
$("sign-out").addEventListener("click", onSignOut);
$("feed").addEventListener("click", onFeedClick);
$("sos").addEventListener("click", onFeedClick);
$("note-save").addEventListener("click", onNoteSave);
setupTools();
boot();
