// The web chat: a small client of the JSON API in frontends/web/app.py. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { cid: null, busy: false, last: null, demoTargets: false, ranks: [] };
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
  card.querySelector(".rank-label").textContent = `#${rank}`;
  const name = card.querySelector(".name");
  name.textContent = hit.text || hit.id.slice(0, 8);
  name.title = hit.text || hit.id;
  const button = card.querySelector(".this-one");
  if (selectable) {
    button.addEventListener("click", () => act(() => api(`/api/conversations/${state.cid}/choose`, { image_id: hit.id })));
  } else {
    button.remove();
  }
  return card;
}

function grid(hits, selectable) {
  const node = document.createElement("div");
  node.className = "grid";
  hits.forEach((hit, i) => node.appendChild(hitCard(hit, i + 1, selectable)));
  return node;
}

function renderTurn(turn) {
  state.last = turn;
  // only the newest matches can be picked
  document.querySelectorAll("#log .this-one").forEach((button) => { button.disabled = true; });
  addMessage("bot", (item) => {
    item.dataset.round = String(turn.round);
    item.dataset.state = turn.state;
    if (turn.message) text(item, "p", turn.message, "note");
    if (turn.state === "found" && turn.chosen) {
      const found = text(item, "p", turn.found_target ? "Found it — that's the target!" : "Found it.", "found");
      if (turn.found_target) found.classList.add("target-found");
      item.appendChild(grid([turn.chosen], false));
      text(item, "p", "Describe another image to search again.", "hint");
      return;
    }
    if (turn.hits.length) {
      text(item, "p", turn.round ? `Top matches after ${turn.round} answer${turn.round === 1 ? "" : "s"}:` : "Top matches for your description:", "label");
      item.appendChild(grid(turn.hits, true));
    }
    if (turn.question) text(item, "p", turn.question, "question");
    else if (turn.state === "showing" || turn.state === "gave_up") text(item, "p", "Is it one of these? Pick it, or tell me more.", "question");
    // the engine's note already asks for a description after "Start over": say it once
    else if (turn.state === "awaiting_description" && !(turn.message || "").includes("Describe the image")) {
      text(item, "p", "Describe the image you are looking for.", "question");
    }
  });
  renderDialog(turn.dialog);
  renderRank(turn);
  updateButtons();
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

function renderRank(turn) {
  if (!turn.target_id) return;
  showTarget({ id: turn.target_id, image: `/api/images/${turn.target_id}` });
  if (turn.action === "started" || turn.action === "restarted") state.ranks = [];
  if (!turn.dialog) {
    $("target-rank").dataset.rank = "";
    $("target-rank").textContent = "Target rank: describe it to start";
  } else {
    setRank(turn.target_rank, turn.rank_limit, turn.round);
  }
  if (turn.dialog && SEARCHING_ACTIONS.has(turn.action)) state.ranks.push([turn.round, turn.target_rank, turn.rank_limit, turn.action]);
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
  act(() => api(`/api/conversations/${state.cid}/messages`, { text: value }), () => {
    if (!input.value) input.value = value; // nothing is lost: the text comes back to be sent again
  });
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
      try {
        renderTurn(await api(`/api/conversations/${saved}`));
      } catch (error) {
        if (error.status !== 404) throw error; // 404: the conversation has not started yet
      }
    } else {
      await ensureConversation();
    }
  } catch (error) {
    addMessage("error", (item) => text(item, "p", error.message));
  }
  document.body.dataset.ready = "1";
  $("message").focus();
})();
