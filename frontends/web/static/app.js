// The web chat: a small client of the JSON API in frontends/web/app.py. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { cid: null, busy: false, last: null, demoTargets: false, ranks: [], events: [] };
const MAX_EVENTS = 60; // what a reload restores (the server keeps the dialog; the page keeps its view)
const MAX_EARLIER = 5; // earlier searches kept (collapsed) above the current one
const SEARCHING_ACTIONS = new Set(["started", "answered", "corrected", "rejected"]);

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError("Cannot reach the web chat server. Is it still running?", 0);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(data.error || `Request failed (HTTP ${response.status}).`, response.status);
  return data;
}

// --- rendering ---------------------------------------------------------------------------------------
function text(parent, tag, value, className) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (className) node.className = className;
  parent.appendChild(node);
  return node;
}

function addMessage(kind, build) {
  const item = document.createElement("li");
  item.className = `msg ${kind}`;
  build(item);
  $("log").appendChild(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function hitCard(hit, rank, selectable) {
  const card = $("hit-template").content.firstElementChild.cloneNode(true);
  card.dataset.id = hit.id;
  if (hit.is_target) card.classList.add("is-target");
  const img = card.querySelector("img");
  img.src = hit.thumbnail;
  img.alt = hit.text ? `match ${rank}: ${hit.text}` : `match ${rank}`;
  img.title = "Click for a larger view";
  img.addEventListener("click", () => openViewer(hit, rank));
  card.querySelector(".rank-label").textContent = `#${rank}`;
  const name = card.querySelector(".name");
  name.textContent = label(hit);
  name.title = [hit.text, hit.source, hit.location].filter(Boolean).join(" · ") || hit.id;
  const button = card.querySelector(".this-one");
  if (selectable) {
    button.addEventListener("click", () => act(() => api(`/api/conversations/${state.cid}/choose`, { image_id: hit.id })));
  } else {
    button.remove();
  }
  return card;
}

// what a person recognises: the file name or message text, else where it comes from; the id only as a last resort
function label(hit) {
  return hit.text || (hit.location ? hit.location.split("/").pop() : "") || hit.source || hit.id.slice(0, 8);
}

function grid(hits, selectable, firstRank = 1) {
  const node = document.createElement("div");
  node.className = "grid";
  hits.forEach((hit, i) => node.appendChild(hitCard(hit, firstRank + i, selectable)));
  return node;
}

function openViewer(hit, rank) {
  const viewer = $("viewer");
  $("viewer-image").src = hit.image;
  $("viewer-image").alt = label(hit);
  $("viewer-title").textContent = `#${rank} ${label(hit)}`;
  const where = [hit.source, hit.location].filter(Boolean);
  $("viewer-where").textContent = where.length ? `From ${where.join(" — ")}` : "";
  viewer.showModal();
}

function rankOf(imageId) {
  const hits = state.last ? state.last.hits : [];
  const index = hits.findIndex((hit) => hit.id === imageId);
  return index >= 0 ? index + 1 : null;
}

function renderTurn(turn, { replay = false } = {}) {
  const previous = state.last;
  if (!replay) remember({ type: "turn", turn });
  if (turn.action === "more" && previous) {
    // the next page joins the matches already on screen, numbered on
    const grids = document.querySelectorAll("#log .msg.bot .grid.current");
    const current = grids[grids.length - 1];
    state.last = turn;
    if (current) {
      turn.hits.slice(turn.page_start).forEach((hit, i) => current.appendChild(hitCard(hit, turn.page_start + i + 1, true)));
      updateButtons();
      return;
    }
  }
  if (turn.action === "started" && previous && previous.dialog) collapseEarlier();
  const chosenRank = turn.chosen ? rankOf(turn.chosen.id) : null;
  state.last = turn;
  // only the newest matches can be picked
  document.querySelectorAll("#log .this-one").forEach((button) => { button.disabled = true; });
  document.querySelectorAll("#log .grid.current").forEach((node) => node.classList.remove("current"));
  document.querySelectorAll("#log .more").forEach((button) => button.remove());
  addMessage("bot", (item) => {
    item.dataset.round = String(turn.round);
    item.dataset.state = turn.state;
    if (turn.message) text(item, "p", turn.message, "note");
    if (turn.state === "found" && turn.chosen) {
      const found = text(item, "p", turn.found_target ? "Found it — that's the target!" : "Found it.", "found");
      if (turn.found_target) found.classList.add("target-found");
      item.appendChild(grid([turn.chosen], false, chosenRank || 1));
      const where = [turn.chosen.source, turn.chosen.location].filter(Boolean);
      if (where.length) text(item, "p", `It lives at ${where.join(" — ")}`, "where");
      text(item, "p", "Describe another image to search again.", "hint");
      return;
    }
    if (turn.hits.length) {
      text(item, "p", turn.round ? `Top matches after ${turn.round} answer${turn.round === 1 ? "" : "s"}:` : "Top matches for your description:", "label");
      const matches = grid(turn.hits, true);
      matches.classList.add("current");
      item.appendChild(matches);
      const more = text(item, "button", "More matches", "more");
      more.type = "button";
      more.addEventListener("click", () => act(() => api(`/api/conversations/${state.cid}/more`, {})));
    }
    if (turn.question) text(item, "p", turn.question, "question");
    else if (turn.state === "showing" || turn.state === "gave_up") text(item, "p", "Is it one of these? Pick it, or tell me more.", "question");
    // the engine's note already asks for a description after "Start over": say it once
    else if (turn.state === "awaiting_description" && !(turn.message || "").includes("Describe the image")) {
      text(item, "p", "Describe the image you are looking for.", "question");
    }
  });
  renderDialog(turn.dialog);
  renderRank(turn, { replay });
  updateButtons();
}

// a new search starts a new view: the earlier one folds away (reachable, not in the way)
function collapseEarlier() {
  const log = $("log");
  const items = [...log.children].filter((node) => !node.classList.contains("earlier"));
  // the new description (and the "Searching…" line) belong to the new search
  while (items.length && /\b(user|pending)\b/.test(items[items.length - 1].className)) items.pop();
  if (!items.length) return;
  const holder = document.createElement("li");
  holder.className = "earlier";
  const details = document.createElement("details");
  text(details, "summary", `Earlier search (${items.length} messages)`);
  const list = document.createElement("ol");
  items.forEach((node) => list.appendChild(node));
  details.appendChild(list);
  holder.appendChild(details);
  log.insertBefore(holder, log.querySelector(":scope > li:not(.earlier)"));
  const earlier = log.querySelectorAll(".earlier");
  for (let i = 0; i < earlier.length - MAX_EARLIER; i++) earlier[i].remove();
}

function remember(event) {
  state.events.push(event);
  if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
  try {
    sessionStorage.setItem("chatir.events", JSON.stringify(state.events));
  } catch (error) { /* storage full or disabled: the page still works, a reload shows less */ }
}

function renderDialog(dialog) {
  const list = $("dialog");
  list.replaceChildren();
  if (!dialog) {
    text(list, "li", "Nothing yet.", "empty");
    return;
  }
  const caption = text(list, "li", "", "caption");
  text(caption, "strong", "You: ");
  caption.append(dialog.caption);
  for (const round of dialog.rounds) {
    const item = document.createElement("li");
    if (round.question) text(item, "span", `${round.question} `, "q");
    text(item, "span", round.answer, "a");
    list.appendChild(item);
  }
}

function showTarget(target) {
  $("target-box").hidden = false;
  $("target-panel").hidden = false;
  const img = $("target-image");
  if (img.dataset.id !== target.id) {
    img.src = target.image;
    img.dataset.id = target.id;
  }
}

function setRank(rank, limit, round) {
  const label = $("target-rank");
  label.dataset.rank = rank ? String(rank) : "";
  label.dataset.round = String(round);
  label.textContent = rank ? `Target rank: #${rank}` : `Target rank: not in the top ${limit}`;
}

function renderRank(turn, { replay = false } = {}) {
  if (!turn.target_id) {
    // the server no longer knows a target for this conversation (e.g. the demo restarted): don't pretend
    if (!replay && !state.demoTargetPending) { $("target-panel").hidden = true; state.ranks = []; }
    return;
  }
  showTarget({ id: turn.target_id, image: `/api/images/${turn.target_id}` });
  if (turn.action === "started" || turn.action === "restarted") state.ranks = [];
  if (!turn.dialog) {
    $("target-rank").dataset.rank = "";
    $("target-rank").textContent = "Target rank: describe it to start";
  } else {
    setRank(turn.target_rank, turn.rank_limit, turn.round);
  }
  if (turn.dialog && SEARCHING_ACTIONS.has(turn.action)) state.ranks.push([turn.round, turn.target_rank, turn.rank_limit, turn.action]);
  sessionStorage.setItem("chatir.ranks", JSON.stringify(state.ranks));
  const history = $("rank-history");
  history.replaceChildren();
  for (const [round, rank, limit, action] of state.ranks) {
    // each entry says what moved the rank: the description, an answer, "None of these" or a correction
    const what = action === "rejected" ? `“None of these” (after answer ${round})`
      : action === "corrected" ? `a correction (after answer ${round})`
      : round === 0 ? "description" : `after answer ${round}`;
    text(history, "li", `${what}: ${rank ? `#${rank}` : `> #${limit}`}`);
  }
}

function updateButtons() {
  const turn = state.last;
  const searching = turn && turn.hits.length && turn.state !== "found";
  $("send").disabled = state.busy;
  $("none-of-these").disabled = state.busy || !searching;
  $("start-over").disabled = state.busy || !turn || !turn.dialog;
}

// --- actions -----------------------------------------------------------------------------------------
async function ensureConversation() {
  if (!state.cid) {
    const created = await api("/api/conversations", {});
    state.cid = created.conversation_id;
    sessionStorage.setItem("chatir.cid", state.cid);
  }
  return state.cid;
}

async function act(call, onError) {
  if (state.busy) return;
  state.busy = true;
  updateButtons();
  const pending = addMessage("bot pending", (item) => text(item, "p", "Searching…"));
  try {
    await ensureConversation();
    renderTurn(await call());
  } catch (error) {
    addMessage("error", (item) => text(item, "p", error.message));
    if (onError) onError(error);
  } finally {
    pending.remove();
    state.busy = false;
    updateButtons();
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("message");
  const value = input.value.trim();
  if (!value || state.busy) return;
  input.value = "";
  addMessage("user", (item) => text(item, "p", value));
  remember({ type: "user", text: value });
  act(() => api(`/api/conversations/${state.cid}/messages`, { text: value }), () => {
    if (!input.value) input.value = value; // nothing is lost: the text comes back to be sent again
  });
});
$("viewer").addEventListener("click", (event) => {
  if (event.target === $("viewer")) $("viewer").close(); // a click on the backdrop closes it
});
$("none-of-these").addEventListener("click", () => act(() => api(`/api/conversations/${state.cid}/reject`, {})));
$("start-over").addEventListener("click", () => act(() => api(`/api/conversations/${state.cid}/restart`, {})));
$("show-target").addEventListener("click", async () => {
  const button = $("show-target");
  button.disabled = true;
  try {
    await ensureConversation();
    const target = await api(`/api/conversations/${state.cid}/target`, {});
    state.ranks = [];
    $("rank-history").replaceChildren();
    showTarget(target);
    button.textContent = "Another target";
    if (state.last && state.last.dialog && state.last.state !== "found") setRank(target.rank, target.rank_limit, state.last.round);
    else {
      $("target-rank").dataset.rank = "";
      $("target-rank").textContent = "Target rank: describe it to start";
    }
  } catch (error) {
    addMessage("error", (item) => text(item, "p", error.message));
  } finally {
    button.disabled = false;
  }
});

// a reload redraws the conversation from what this tab saw, then brings it up to date with the server's state
async function restore(cid) {
  let events = [];
  try {
    events = JSON.parse(sessionStorage.getItem("chatir.events") || "[]");
  } catch (error) { events = []; }
  let current = null;
  try {
    current = await api(`/api/conversations/${cid}`);
  } catch (error) {
    if (error.status !== 404) throw error; // 404: the conversation has not started yet
  }
  if (!current) return;
  for (const event of events) {
    if (event.type === "user") addMessage("user", (item) => text(item, "p", event.text));
    else renderTurn(event.turn, { replay: true });
  }
  state.events = events;
  try {
    state.ranks = JSON.parse(sessionStorage.getItem("chatir.ranks") || "[]");
  } catch (error) { state.ranks = []; }
  const last = events.length ? events[events.length - 1].turn : null;
  const same = last && last.round === current.round && last.state === current.state
    && JSON.stringify(last.hits.map((h) => h.id)) === JSON.stringify(current.hits.map((h) => h.id));
  if (!same) renderTurn(current, { replay: true });
  else { state.last = current; renderDialog(current.dialog); }
  renderRank({ ...current, action: "shown" });
  updateButtons();
}

(async () => {
  try {
    const info = await api("/api/info");
    state.demoTargets = info.demo_targets;
    if (info.about) {
      // say what the collection holds, with descriptions that suit it (a newcomer should not ask for a dog)
      $("about").textContent = info.about;
      $("about").hidden = false;
      if (info.examples.length) $("message").placeholder = `e.g. ${info.examples[0]}`;
      const list = $("examples");
      for (const example of info.examples) text(list, "li", example);
      list.hidden = !info.examples.length;
    }
    $("target-box").hidden = !info.demo_targets;
    const saved = sessionStorage.getItem("chatir.cid");
    if (saved) {
      state.cid = saved;
      await restore(saved);
    } else {
      await ensureConversation();
    }
  } catch (error) {
    addMessage("error", (item) => text(item, "p", error.message));
  }
  document.body.dataset.ready = "1";
  $("message").focus();
})();
