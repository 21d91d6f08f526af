// The web chat: a small client of the JSON API in frontends/web/app.py. No framework, no CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { cid: null, busy: false, last: null };

async function api(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = data.error || (Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail);
    throw new Error(detail || `request failed (${response.status})`);
  }
  return data;
}

function addMessage(kind, build) {
  const item = document.createElement("li");
  item.className = `msg ${kind}`;
  build(item);
  $("log").appendChild(item);
  item.scrollIntoView({ block: "end", behavior: "smooth" });
  return item;
}

function text(parent, tag, value, className) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (className) node.className = className;
  parent.appendChild(node);
  return node;
}

function renderTurn(turn) {
  state.last = turn;
  addMessage("bot", (item) => {
    item.dataset.round = String(turn.round);
    if (turn.message) text(item, "p", turn.message);
    if (turn.state === "found" && turn.chosen) {
      text(item, "p", turn.found_target ? "Found it — that's the target!" : "Found it.", "found");
      const grid = document.createElement("div");
      grid.className = "grid";
      grid.appendChild(hitCard(turn.chosen, 1, false));
      item.appendChild(grid);
      return;
    }
    if (turn.hits.length) {
      text(item, "p", `Top matches after round ${turn.round}:`);
      const grid = document.createElement("div");
      grid.className = "grid";
      turn.hits.forEach((hit, i) => grid.appendChild(hitCard(hit, i + 1, true)));
      item.appendChild(grid);
    }
    if (turn.question) text(item, "p", turn.question, "question");
    else if (turn.state === "showing" || turn.state === "gave_up") text(item, "p", "Is it one of these? Pick it, or tell me more.", "question");
    else if (turn.state === "awaiting_description") text(item, "p", "Describe the image you are looking for.", "question");
  });
  renderDialog(turn.dialog);
  renderRank(turn);
  $("none-of-these").disabled = !(turn.hits.length && turn.state !== "found");
}

function hitCard(hit, rank, selectable) {
  const card = $("hit-template").content.firstElementChild.cloneNode(true);
  card.dataset.id = hit.id;
  if (hit.is_target) card.classList.add("is-target");
  const img = card.querySelector("img");
  img.src = hit.thumbnail;
  img.alt = hit.text || hit.id;
  card.querySelector(".rank-label").textContent = `${rank}.`;
  card.querySelector(".name").textContent = hit.text || hit.id;
  const button = card.querySelector(".this-one");
  if (selectable) button.addEventListener("click", () => act(() => api(`/api/conversations/${state.cid}/choose`, { image_id: hit.id })));
  else button.remove();
  return card;
}

function renderDialog(dialog) {
  const list = $("dialog");
  list.replaceChildren();
  if (!dialog) return;
  text(list, "li", dialog.caption);
  for (const round of dialog.rounds) text(list, "li", round.question ? `${round.question} — ${round.answer}` : round.answer);
}

function renderRank(turn) {
  if (!turn.target_id) return;
  const label = turn.target_rank ? `#${turn.target_rank}` : `beyond #${turn.rank_limit}`;
  $("target-rank").textContent = `Rank of the target: ${label} (round ${turn.round})`;
}

async function ensureConversation() {
  if (!state.cid) {
    const created = await api("/api/conversations", {});
    state.cid = created.conversation_id;
    sessionStorage.setItem("chatir.cid", state.cid);
    $("show-target").hidden = !created.demo_targets;
  }
}

async function act(call, userText) {
  if (state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  const pending = addMessage("bot pending", (item) => text(item, "p", "Searching…"));
  try {
    await ensureConversation();
    renderTurn(await call());
  } catch (error) {
    addMessage("error", (item) => text(item, "p", error.message));
  } finally {
    pending.remove();
    state.busy = false;
    $("send").disabled = false;
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("message").value.trim();
  if (!value) return;
  $("message").value = "";
  addMessage("user", (item) => text(item, "p", value));
  act(() => api(`/api/conversations/${state.cid}/messages`, { text: value }));
});
$("none-of-these").addEventListener("click", () => act(() => api(`/api/conversations/${state.cid}/reject`, {})));
$("start-over").addEventListener("click", () => {
  if (!state.cid) return;
  act(() => api(`/api/conversations/${state.cid}/restart`, {}));
});
$("show-target").addEventListener("click", async () => {
  await ensureConversation();
  const target = await api(`/api/conversations/${state.cid}/target`, {});
  $("target-panel").hidden = false;
  $("target-image").src = target.image;
  $("target-image").dataset.id = target.id;
  $("target-rank").textContent = "Rank: describe it to start";
});

(async () => {
  const saved = sessionStorage.getItem("chatir.cid");
  try {
    await ensureConversation();
    if (saved) {
      state.cid = saved;
      renderTurn(await api(`/api/conversations/${saved}`));
    }
  } catch (error) {
    state.cid = null;
    sessionStorage.removeItem("chatir.cid");
    await ensureConversation().catch(() => {});
  }
})();
