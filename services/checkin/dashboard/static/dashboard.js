// The coach dashboard: sign-in, the client list, one client's history, live refresh.
// Everything a member typed (labels, ids) is put in the page with textContent, never as HTML.

import {
  addDays,
  channelText,
  daysBetween,
  daysToNextMilestone,
  longDate,
  milestonesReached,
  normaliseClients,
  parseDay,
  reasonText,
  relativeDay,
  reportsByDay,
  runsOf,
  shortDate,
  slipsOf,
  todayIn,
  tokenClaims,
  weekday,
} from "./model.js";

const STORAGE = "nocontact.dashboard";
const params = new URLSearchParams(location.search);
// How often the page asks for news. Polling (not server-sent events) because the API runs
// under gunicorn's sync workers, where a held-open stream per coach would starve requests.
const REFRESH_MS = Math.max(Number(params.get("refresh")) || 5, 1) * 1000;

const state = {
  token: null,
  coachId: null,
  clients: [],
  cards: new Map(), // memberId -> {signature, node}
  timer: null,
  detail: null, // commitment id shown in the detail view
  detailSignature: null,
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
  node.append(...children);
  return node;
}

// -- talking to the service -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "the service does not answer");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body && body.detail);
  return body;
}

async function allPages(path) {
  const items = [];
  let url = path;
  for (let page = 0; page < 50 && url; page += 1) {
    const body = await api(url);
    if (Array.isArray(body)) return body;
    items.push(...(body.items || body.check_ins || []));
    url = body.next_cursor ? `${path}${path.includes("?") ? "&" : "?"}cursor=${encodeURIComponent(body.next_cursor)}` : null;
  }
  return items;
}

// -- signing in ---------------------------------------------------------------------------------

function saveSession() {
  sessionStorage.setItem(STORAGE, JSON.stringify({ token: state.token, coachId: state.coachId }));
}

function loadSession() {
  // A link like /dashboard#token=…&coach=… (printed by `make run`) signs in once; the token
  // then leaves the address bar so it is not bookmarked or shared by accident.
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  if (hash.get("token")) {
    state.token = hash.get("token");
    state.coachId = hash.get("coach") || tokenClaims(state.token)?.sub || null;
    saveSession();
    history.replaceState(null, "", location.pathname + location.search);
    return true;
  }
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE) || "null");
    if (saved && saved.token && saved.coachId) {
      Object.assign(state, saved);
      return true;
    }
  } catch {
    /* a damaged entry means: sign in again */
  }
  return false;
}

function showSignIn(message) {
  stopPolling();
  sessionStorage.removeItem(STORAGE);
  state.token = state.coachId = null;
  state.cards.clear();
  $("clients").replaceChildren();
  for (const id of ["overview", "detail", "who", "live", "error"]) $(id).hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("token").focus();
}

function onTokenInput() {
  const token = $("token").value.trim();
  const claims = tokenClaims(token);
  // An admin API key is not a JWT: it needs the coach named; a coach token names itself.
  $("coach-field").hidden = !token || (claims && claims.role === "coach");
}

function onSignIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  const claims = tokenClaims(token);
  if (claims && claims.role === "member") {
    showSignIn("That is a member token. The dashboard needs a coach token (or an admin key).");
    return;
  }
  const coachId = claims && claims.role === "coach" ? claims.sub : $("coach-id").value.trim();
  if (!coachId) {
    $("coach-field").hidden = false;
    $("sign-in-error").hidden = false;
    $("sign-in-error").textContent = "Name the coach whose clients you want to see.";
    $("coach-id").focus();
    return;
  }
  state.token = token;
  state.coachId = coachId;
  saveSession();
  $("token").value = "";
  start();
}

function start() {
  $("sign-in").hidden = true;
  const claims = tokenClaims(state.token);
  $("who").hidden = false;
  $("who-text").textContent =
    claims && claims.role === "coach" ? `Coach ${state.coachId}` : `Admin · viewing coach ${state.coachId}`;
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
  if (!state.token) return;
  try {
    if (state.detail) await loadDetail(state.detail);
    else await loadOverview();
    setLive(true, `Live · updated ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })}`);
    $("error").hidden = true;
  } catch (error) {
    if (error.status === 401) return showSignIn("Your token has expired or was revoked. Please sign in again.");
    if (error.status === 403) return showSignIn(`Not allowed: ${error.message}`);
    setLive(false, error.status === 0 ? "Offline · retrying" : "Trouble loading · retrying");
    $("error").hidden = false;
    $("error").textContent = `Could not load: ${error.message}.`;
  }
  schedule();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) stopPolling();
  else if (state.token) refresh();
});

// -- the overview ---------------------------------------------------------------------------------

async function loadOverview() {
  const body = await api(`/v1/coaches/${encodeURIComponent(state.coachId)}/clients`);
  state.clients = normaliseClients(body);
  renderOverview(state.clients);
}

function renderOverview(clients) {
  $("overview").hidden = false;
  $("detail").hidden = true;
  const commitments = clients.flatMap((c) => c.commitments);
  const atRisk = clients.filter((c) => c.atRisk).length;
  const today = commitments.filter((c) => c.lastCheckIn && c.today && c.lastCheckIn >= c.today).length;
  $("summary").replaceChildren(
    el("li", {}, el("b", { text: clients.length }), ` client${clients.length === 1 ? "" : "s"}`),
    el("li", { class: atRisk ? "warn" : null }, el("b", { text: atRisk }), " at risk"),
    el("li", {}, el("b", { text: `${today}/${commitments.length}` }), " checked in today"),
  );
  $("empty").hidden = clients.length > 0;

  const list = $("clients");
  const seen = new Set();
  const nodes = clients.map((client) => {
    seen.add(client.memberId);
    const signature = JSON.stringify(client);
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
  for (const id of [...state.cards.keys()]) if (!seen.has(id)) state.cards.delete(id);
  nodes.forEach((node, i) => {
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
  });
  while (list.children.length > nodes.length) list.lastElementChild.remove();
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
      el("header", { class: "client-head" }, el("h2", { id: heading, text: client.memberId }), client.atRisk ? riskFlag() : null),
      client.commitments.map(commitmentBlock),
    ),
  );
}

function commitmentBlock(c) {
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
    el("a", { class: "more", href: `#/c/${encodeURIComponent(c.commitmentId)}` }, "Full history", el("span", { class: "visually-hidden", text: ` of ${c.memberId} with ${c.label}` }), " →"),
  );
}

const STATE_TEXT = { kept: "kept", slipped: "slipped", unreported: "not reported", excused: "paused (excused)" };

function dayCell(day, today, extra = "") {
  const isToday = day.date === today;
  const label = `${day.date ? longDate(day.date) : ""}${isToday ? " (today)" : ""}: ${STATE_TEXT[day.state]}`;
  return el("li", {
    class: `day ${day.state}${isToday ? " today" : ""}${extra}`,
    title: label,
    "aria-label": label,
    "data-date": day.date,
    "data-state": day.state,
  });
}

function strip(c) {
  const kept = c.days.filter((d) => d.state === "kept").length;
  const slipped = c.days.filter((d) => d.state === "slipped").length;
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
      `Last ${c.days.length} days: ${kept} kept, ${slipped} slipped, ${c.days.length - kept - slipped} not reported.`,
    ),
    el("ol", { class: "strip", "aria-label": `Last ${c.days.length} days` }, blanks, c.days.map((d) => dayCell(d, c.today))),
    el("div", { class: "strip-scale", "aria-hidden": "true" }, el("span", { text: first ? shortDate(first) : "" }), el("span", { text: "today" })),
  );
}

function sparkline(urges) {
  if (!urges.length) return el("div", { class: "urges none" }, el("span", { class: "k", text: "Urges" }), el("span", { class: "muted", text: "none reported" }));
  const w = 120;
  const h = 30;
  const x = (i) => (urges.length === 1 ? w / 2 : (i * w) / (urges.length - 1));
  const y = (v) => h - 2 - (v / 10) * (h - 4);
  const points = urges.map((u, i) => `${x(i).toFixed(1)},${y(u.value).toFixed(1)}`).join(" ");
  const last = urges[urges.length - 1];
  const first = urges[0].value;
  const trend = last.value > first + 1 ? "rising" : last.value < first - 1 ? "falling" : "steady";
  const values = urges.map((u) => u.value).join(", ");
  return el(
    "div",
    { class: `urges ${trend}` },
    el("span", { class: "k", text: "Urges" }),
    svg(
      "svg",
      { viewBox: `-3 -3 ${w + 6} ${h + 6}`, class: "spark", role: "img", "aria-label": `Urge levels of the last ${urges.length} check-ins, out of 10: ${values}; ${trend}` },
      svg("line", { x1: 0, x2: w, y1: y(8), y2: y(8), class: "spark-high" }),
      svg("polyline", { points, class: "spark-line" }),
      svg("circle", { cx: x(urges.length - 1), cy: y(last.value), r: 3, class: "spark-last" }),
    ),
    el("span", { class: "latest" }, el("b", { text: last.value }), "/10 ", el("span", { class: `trend ${trend}`, text: { rising: "↑ rising", falling: "↓ falling", steady: "→ steady" }[trend] })),
  );
}

// -- the detail view ---------------------------------------------------------------------------------

function findCommitment(id) {
  for (const client of state.clients) for (const c of client.commitments) if (c.commitmentId === id) return c;
  return null;
}

function startOfCounting(streak) {
  // Every day from starts_on to counted_through is kept, slipped, unreported or excused (a
  // pause), so the counts give the first day back even though the streak document does not name it.
  const counted = (streak.kept_days || 0) + (streak.slipped_days || 0) + (streak.unreported_days || 0) +
    (streak.excused_days || 0);
  return streak.counted_through && counted > 0 ? addDays(streak.counted_through, 1 - counted) : null;
}

async function loadDetail(id) {
  if (!state.clients.length) state.clients = normaliseClients(await api(`/v1/coaches/${encodeURIComponent(state.coachId)}/clients`));
  const c = findCommitment(id);
  const base = `/v1/commitments/${encodeURIComponent(id)}`;
  // The runs and their milestones are the service's (GET .../runs): the page derives none.
  const [streak, checkIns, runsJson] = await Promise.all([api(`${base}/streak`), allPages(`${base}/check-ins`), api(`${base}/runs`)]);
  const reports = reportsByDay(checkIns);
  const days = Object.keys(reports).sort();
  const timezone = c?.timezone || streak.timezone || null;
  const today = todayIn(timezone) || streak.as_of || c?.today || days[days.length - 1];
  const startsOn = c?.startsOn || streak.starts_on || startOfCounting(streak) || days[0] || today;
  const runs = runsOf(runsJson);
  const past = { runs, slips: slipsOf(reports), reached: milestonesReached(runs) };
  const model = { c, streak, reports, today, startsOn, past };
  const signature = JSON.stringify(model);
  if (signature === state.detailSignature) return;
  const first = state.detailSignature === null;
  state.detailSignature = signature;
  renderDetail(model, first);
}

function renderDetail({ c, streak, reports, today, startsOn, past }, first) {
  $("overview").hidden = true;
  $("detail").hidden = false;
  const label = c?.label || "Commitment";
  const body = el(
    "article",
    { class: "detail" },
    el(
      "header",
      { class: "detail-head" },
      el("h1", { id: "detail-title" }, el("span", { text: label }), c?.relationship ? el("span", { class: "chip", text: c.relationship }) : null),
      el("p", { class: "muted", text: `Client ${c?.memberId || "?"} · since ${longDate(startsOn)}${c?.timezone ? ` · ${c.timezone}` : ""}` }),
      c?.reasons.length
        ? el("p", { class: "reasons" }, riskFlag(), c.reasons.map((r) => el("span", { class: "reason", "data-reason": r.code, text: reasonText(r, c) })))
        : null,
    ),
    el(
      "dl",
      { class: "numbers wide" },
      el("div", { class: "big" }, el("dt", { text: "Current streak" }), el("dd", { class: "streak-current" }, el("b", { text: streak.current_days }), " days")),
      el("div", {}, el("dt", { text: "Longest" }), el("dd", { text: `${streak.longest_days} days` })),
      el("div", {}, el("dt", { text: "Kept" }), el("dd", { text: streak.kept_days })),
      el("div", {}, el("dt", { text: "Slipped" }), el("dd", { text: streak.slipped_days })),
      el("div", {}, el("dt", { text: "Not reported" }), el("dd", { text: streak.unreported_days })),
      el("div", {}, el("dt", { text: "Next milestone" }), el("dd", { text: streak.next_milestone ? `${streak.next_milestone} days` : "all reached" })),
    ),
    el("h2", { text: "History" }),
    heatmap(reports, startsOn, today),
    urgeChart(reports, startsOn, today),
    el("div", { class: "columns" }, slipsTable(past.slips), runsTable(past.runs)),
    el("h2", { text: "Milestones reached" }),
    past.reached.length
      ? el("ol", { class: "milestones" }, past.reached.map((m) => el("li", {}, el("b", { text: `${m.threshold} day${m.threshold === 1 ? "" : "s"}` }), ` ${longDate(m.on)}`)))
      : el("p", { class: "muted", text: "None yet: the first one is one kept day away." }),
  );
  $("detail-body").replaceChildren(body);
  if (first) $("detail-title").focus?.();
}

function heatmap(reports, startsOn, today) {
  // Whole weeks, Monday first, so that columns line up like a wall calendar.
  const from = addDays(startsOn, -weekday(startsOn));
  const weeks = Math.ceil((daysBetween(from, today) + 1) / 7);
  const columns = [];
  let lastMonth = null;
  let lastLabelled = -2;
  for (let w = 0; w < weeks; w += 1) {
    const cells = [];
    let month = null;
    const monthKey = addDays(from, w * 7 + 6).slice(0, 7); // the month most of the column belongs to
    if (monthKey !== lastMonth && w - lastLabelled > 1) {
      month = new Date(parseDay(`${monthKey}-01`)).toLocaleDateString(undefined, { timeZone: "UTC", month: "short" });
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
      const dayState = report ? report.outcome : "unreported";
      const urge = report && report.urge !== null ? `, urge ${report.urge}/10` : "";
      const cell = dayCell({ date, state: dayState }, today);
      cell.setAttribute("aria-label", cell.getAttribute("aria-label") + urge);
      cell.title = cell.getAttribute("aria-label");
      cells.push(cell);
    }
    columns.push(el("li", { class: "week" }, el("span", { class: "month", "aria-hidden": "true", text: month || "" }), el("ol", { class: "week-days" }, cells)));
  }
  const key = (state, text) => el("li", {}, el("span", { class: `day ${state}`, "aria-hidden": "true" }), text);
  return el(
    "figure",
    { class: "heatmap-wrap" },
    el("div", { class: "weekdays", "aria-hidden": "true" }, ["Mon", "", "Wed", "", "Fri", "", "Sun"].map((d) => el("span", { text: d }))),
    el("ol", { class: "heatmap", "aria-label": `Every day since ${longDate(startsOn)}` }, columns),
    el("figcaption", { class: "heatmap-key" }, el("ul", {}, key("kept", "kept"), key("slipped", "slipped"), key("unreported", "not reported"), key("kept today", "today"))),
  );
}

function urgeChart(reports, startsOn, today) {
  // The urge of every reported day over the whole commitment; slips marked with a triangle.
  const span = Math.max(daysBetween(startsOn, today), 1);
  const w = 600;
  const h = 110;
  const x = (date) => (daysBetween(startsOn, date) / span) * w;
  const y = (v) => h - (v / 10) * h;
  const days = Object.keys(reports).filter((d) => d >= startsOn && d <= today && reports[d].urge !== null).sort();
  if (days.length < 2) return null;
  const points = days.map((d) => `${x(d).toFixed(1)},${y(reports[d].urge).toFixed(1)}`).join(" ");
  const slips = days.filter((d) => reports[d].outcome === "slipped");
  const recent = days.slice(-7).map((d) => reports[d].urge);
  const average = (recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(1);
  return el(
    "figure",
    { class: "urge-chart" },
    el("figcaption", {}, el("b", { text: "Urges" }), ` 0–10 · average of the last ${recent.length} check-ins: ${average}`),
    svg(
      "svg",
      { viewBox: `-8 -8 ${w + 16} ${h + 16}`, preserveAspectRatio: "none", role: "img",
        "aria-label": `Urge levels of ${days.length} check-ins since ${longDate(startsOn)}; recent average ${average} of 10` },
      svg("line", { x1: 0, x2: w, y1: y(8), y2: y(8), class: "spark-high" }),
      svg("line", { x1: 0, x2: w, y1: h, y2: h, class: "axis" }),
      svg("polyline", { points, class: "spark-line" }),
      ...slips.map((d) => svg("path", { d: `M${x(d)},${y(reports[d].urge) - 9} l6,10 h-12 z`, class: "slip-mark" },
        svg("title", {}, document.createTextNode(`slip on ${longDate(d)}`)))),
    ),
  );
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
                el("td", { text: s.initiatedBy === "me" ? "the client" : s.initiatedBy === "them" ? "the other person" : "?" }),
                el("td", { text: s.urge ?? "–" }),
              ),
            ),
          ),
        )
      : el("p", { class: "muted", text: "No slips. Every reported day was kept." }),
  );
}

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
                el("td", { text: r.endedBy ? longDate(r.end) : "ongoing" }),
                el("td", {}, el("b", { text: r.length }), ` day${r.length === 1 ? "" : "s"}`),
              ),
            ),
          ),
        )
      : el("p", { class: "muted", text: "No counted days yet." }),
  );
}

// -- routing -------------------------------------------------------------------------------------------

function route() {
  const match = location.hash.match(/^#\/c\/(.+)$/);
  const detail = match ? decodeURIComponent(match[1]) : null;
  if (detail !== state.detail) state.detailSignature = null;
  state.detail = detail;
  if (!detail) {
    $("detail").hidden = true;
    if (state.clients.length) renderOverview(state.clients);
  }
  refresh();
}

window.addEventListener("hashchange", () => {
  if (/^#token=/.test(location.hash)) {
    // A sign-in link opened in a tab that already shows the page.
    state.cards.clear();
    $("clients").replaceChildren();
    state.clients = [];
    if (loadSession()) start();
  } else if (state.token) route();
});
$("sign-in-form").addEventListener("submit", onSignIn);
$("token").addEventListener("input", onTokenInput);
$("sign-out").addEventListener("click", () => showSignIn(null));

if (loadSession()) start();
else showSignIn(null);
