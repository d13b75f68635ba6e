// The anybind search page: plain JavaScript, no build step, nothing loaded from elsewhere.
//
// It calls the server's API: GET /info (the chips: the modalities of the index), POST /search
// (JSON for a text query or expression, multipart for a file; with the chosen mix), POST /preview
// (a picture of the file a search was made with), GET /items/{id} (the indexed file: players, text
// snippets, "search with this result") and GET /thumbs/{id}.png (previews). The address follows the
// search (q, modality, mix and k as URL parameters, history.replaceState), and an address holding
// them runs that search when it is opened, so a search can be shared. A server with a token: the
// page takes it from ?token= in its address (or asks for it, once, when a request is refused),
// moves it into the anybind_token cookie (percent-encoded, so any token fits) for the <img>,
// <audio> and <video> elements, which cannot send headers, and drops it from the address and the
// history at once (history.replaceState). API calls also send "Authorization: Bearer" when the
// token is plain ASCII (a header cannot carry other characters as UTF-8; the cookie does).
// Everything a result holds is shown as text, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_COOKIE = "anybind_token";
  const SNIPPET_BYTES = 2048;
  const SNIPPET_CHARS = 280;
  const AUDIO = new Set(["audio", "speech_units"]);
  const VIDEO = new Set(["video", "two_stream"]);
  const PLOTS = new Set(["imu", "timeseries"]);
  const MIXES = ["calibrated", "centered", "interleave", "raw"];
  const DEFAULT_MIX = "calibrated";
  const DEFAULT_K = 24;
  // What a result's rank_score is, by the mix that ranked the results (the response's ranked_by).
  const RANKS = {
    calibrated: { short: "z", title: "z: how many standard deviations this cosine lies above what the query "
      + "scores on this modality on average (the calibrated mix ranks by it)" },
    centered: { short: "Δ", title: "Δ: the cosine less the query's average cosine over this modality "
      + "(the centered mix ranks by it)" },
  };
  const RANKED_BY = {
    calibrated: "calibrated mix (z: cosine in standard deviations above the query's mean on each modality)",
    centered: "centered mix (Δ: cosine less the query's mean on each modality)",
    interleave: "interleave (each modality's best, then their second best, …)",
    raw: "cosine",
  };

  const state = {
    token: null,
    asked: false,     // the page asked for the token (it asks once)
    query: null,      // {kind: "text", text} or {kind: "file", file, label}
    modality: null,   // the active filter chip, or null for every modality
    mix: DEFAULT_MIX, // how several modalities are ranked together (the "rank" select)
    modalities: [],   // the modalities the index holds (GET /info): the chips
    counts: new Map(),  // modality → count in the current results (none after an error)
    seq: 0,           // the newest search; older answers are dropped
    objectUrls: [],
    queryUrls: [],    // object URLs of the query's own preview and player
  };

  const $ = (selector) => document.querySelector(selector);

  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  // ------------------------------------------------------------------ token and requests

  function setToken(token) {
    state.token = token;
    // Percent-encoded, the cookie holds any token (the server compares it decoded, as UTF-8 bytes).
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${TOKEN_COOKIE}=${encodeURIComponent(token)}; path=/; SameSite=Strict${secure}`;
  }

  function headerToken() {
    // A header value is bytes the browser takes as Latin-1: only a printable ASCII token is sent as
    // one; any other is sent in the cookie alone (same-origin requests carry it).
    return state.token && /^[\x21-\x7E]+$/.test(state.token) ? state.token : null;
  }

  function tokenFromAddress() {
    const params = new URLSearchParams(location.search);
    const token = params.get("token");
    if (!token) return;
    setToken(token);
    params.delete("token");  // not left in the address bar or the history
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }

  async function api(url, init = {}, retried = false) {
    const used = state.token;
    const headers = new Headers(init.headers || {});
    const token = headerToken();
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const resp = await fetch(url, { ...init, headers });
    if (resp.status === 401 && !retried && tokenAgain(used)) return api(url, init, true);
    return resp;
  }

  function tokenAgain(used) {
    // Several requests may be refused at once: the first asks, the others retry with its answer.
    if (state.token !== used) return true;
    if (state.asked) return false;  // asked once already: the refusal stands (the status says why)
    state.asked = true;
    const answer = window.prompt("This server needs its token:");
    if (answer && answer.trim()) {
      setToken(answer.trim());
      return true;
    }
    return false;
  }

  async function checked(resp) {
    if (resp.ok) return resp;
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON: the status says enough */ }
    const err = body && body.error;
    throw new Error(err ? `${err.type}: ${err.message}` : `the server answered ${resp.status} ${resp.statusText}`);
  }

  function setStatus(text, isError = false) {
    const status = $("#status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  // ------------------------------------------------------------------ searching

  function searchRequest(query, k) {
    if (query.kind === "text") {
      return {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query: query.text, k, modality: state.modality, mix: state.mix }),
      };
    }
    const form = new FormData();
    form.append("file", query.file, query.file.name);
    form.append("k", String(k));
    form.append("mix", state.mix);
    if (state.modality) form.append("modality", state.modality);
    return { method: "POST", body: form };
  }

  function wantedK() {
    const k = Math.round(Number($("#k").value));
    return Number.isFinite(k) && k >= 1 ? Math.min(k, 200) : DEFAULT_K;
  }

  // The address holds the search (a file query cannot be put there: its filter and ranking are).
  function syncAddress() {
    const params = new URLSearchParams();
    if (state.query && state.query.kind === "text") params.set("q", state.query.text);
    if (state.modality) params.set("modality", state.modality);
    if (state.mix !== DEFAULT_MIX) params.set("mix", state.mix);
    if (wantedK() !== DEFAULT_K) params.set("k", String(wantedK()));
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }

  function fromAddress() {
    const params = new URLSearchParams(location.search);
    const mix = params.get("mix");
    if (mix && MIXES.includes(mix)) state.mix = mix;
    $("#mix").value = state.mix;
    state.modality = params.get("modality") || null;
    const k = Number(params.get("k"));
    if (Number.isInteger(k) && k >= 1 && k <= 200) $("#k").value = String(k);
    return params.get("q");
  }

  async function runSearch() {
    if (!state.query) return;
    const seq = ++state.seq;
    const started = performance.now();
    syncAddress();
    setStatus("Searching…");
    try {
      const resp = await checked(await api("/search", searchRequest(state.query, wantedK())));
      const data = await resp.json();
      if (seq !== state.seq) return;
      state.counts = countModalities(data.results);  // the chips count what is shown now
      renderChips();
      const rankedBy = data.ranked_by in RANKED_BY ? data.ranked_by : "raw";
      renderResults(data.results, rankedBy);
      const ms = Math.round(performance.now() - started);
      const filter = state.modality ? ` of ${state.modality}` : "";
      setStatus(`${data.results.length} result(s)${filter} · ranked by ${RANKED_BY[rankedBy]}`
        + ` · index generation ${data.generation} · ${ms} ms`);
    } catch (err) {
      if (seq !== state.seq) return;
      renderResults([]);  // no results of an earlier query left under this query's error
      state.counts = new Map();  // nor their counts on the chips
      renderChips();
      setStatus(err.message, true);
    }
  }

  function searchText(text) {
    state.query = { kind: "text", text };
    showQuery(null);
    runSearch();
  }

  function searchFile(file, label) {
    state.query = { kind: "file", file, label: label || file.name };
    $("#query").value = "";
    showQuery(state.query);
    runSearch();
  }

  async function searchWithResult(result) {
    setStatus(`Reading ${result.name}…`);
    try {
      const resp = await checked(await api(result.url));
      const blob = await resp.blob();
      const file = new File([blob], result.name, { type: blob.type });
      searchFile(file, `${result.name} (${result.modality}, a result)`);
    } catch (err) {
      setStatus(err.message, true);
    }
  }

  function showQuery(query) {
    const view = $("#query-view");
    for (const url of state.queryUrls) URL.revokeObjectURL(url);
    state.queryUrls = [];
    view.replaceChildren();
    view.hidden = !query;
    if (!query) return;
    const size = query.file.size < 1024 ? `${query.file.size} B` : `${(query.file.size / 1024).toFixed(1)} KiB`;
    const clear = el("button", { type: "button", className: "clear", textContent: "×", title: "Clear" });
    clear.addEventListener("click", () => { state.query = null; showQuery(null); syncAddress(); });
    const picture = el("span", { className: "query-preview" });
    view.append(picture, el("span", { textContent: "Searching with " }), el("strong", { textContent: query.label }),
      el("span", { textContent: ` · ${size}` }), clear);
    showQueryPreview(query, picture);
  }

  // The server draws the query file as it draws results (POST /preview); audio and video get a player.
  async function showQueryPreview(query, box) {
    const form = new FormData();
    form.append("file", query.file, query.file.name);
    try {
      const resp = await checked(await api("/preview", { method: "POST", body: form }));
      const blob = await resp.blob();
      if (state.query !== query) return;
      const modality = resp.headers.get("X-Anybind-Modality") || "";
      const url = URL.createObjectURL(blob);
      state.queryUrls.push(url);
      box.append(el("img", { className: `query-thumb m-${modality}`, src: url,
        alt: `${modality} preview of ${query.file.name}` }));
      if (AUDIO.has(modality) || VIDEO.has(modality)) {
        const media = URL.createObjectURL(query.file);
        state.queryUrls.push(media);
        box.append(el(AUDIO.has(modality) ? "audio" : "video", { controls: true, preload: "metadata", src: media,
          muted: VIDEO.has(modality), className: "query-player" }));
      }
    } catch (err) {
      if (state.query !== query) return;
      box.append(el("span", { className: "no-preview", textContent: `no preview (${err.message})` }));
    }
  }

  // ------------------------------------------------------------------ chips

  function countModalities(results) {
    const counts = new Map();
    for (const r of results) counts.set(r.modality, (counts.get(r.modality) || 0) + 1);
    return counts;
  }

  function chip(label, modality) {
    const count = modality ? state.counts.get(modality) : undefined;
    const button = el("button", {
      type: "button", className: "chip", textContent: count ? `${label} ${count}` : label,
      dataset: { modality: modality || "" },
    });
    button.setAttribute("aria-pressed", String(state.modality === modality));
    button.addEventListener("click", () => {
      if (state.modality === modality) return;
      state.modality = modality;
      renderChips();
      if (state.query) runSearch();
      else {
        syncAddress();
        setStatus(modality ? `Results will be ${modality} only.` : "Results will be of every modality.");
      }
    });
    return button;
  }

  function renderChips() {
    const names = new Set([...state.modalities, ...state.counts.keys()]);
    if (state.modality) names.add(state.modality);
    const chips = $("#chips");
    chips.replaceChildren();
    if (!names.size) return;
    chips.append(chip("all", null));
    for (const modality of [...names].sort()) chips.append(chip(modality, modality));
  }

  async function loadModalities() {
    try {
      const info = await (await checked(await api("/info"))).json();
      state.modalities = Array.isArray(info.index_modalities) ? info.index_modalities : [];
      renderChips();
    } catch (err) {
      setStatus(err.message, true);
    }
  }

  // ------------------------------------------------------------------ results

  function renderResults(results, rankedBy = "raw") {
    for (const url of state.objectUrls) URL.revokeObjectURL(url);
    state.objectUrls = [];
    $("#results").replaceChildren(...results.map((r) => card(r, rankedBy)));
  }

  // "z +2.31 · cos 0.512": what the results were ranked by, then the cosine; the title says which is which.
  function scoreLabel(result, rankedBy) {
    const cosine = Number(result.score);
    const rank = RANKS[rankedBy];
    const node = el("span", { className: "score", dataset: { cosine: String(cosine), rankedBy } });
    let title = "cos: the cosine similarity of the query and this item";
    if (rank && result.rank_score !== undefined && result.rank_score !== null) {
      const value = Number(result.rank_score);
      node.dataset.rankScore = String(value);
      node.append(el("span", { className: "rank", textContent: `${rank.short} ${value >= 0 ? "+" : ""}${value.toFixed(2)}` }),
        document.createTextNode(" · "));
      title = `${rank.title}\n${title}`;
    } else if (rankedBy === "interleave") {
      title += "\nranked by interleave: each modality's best, then their second best, …";
    }
    node.append(el("span", { className: "cos", textContent: `cos ${cosine.toFixed(3)}` }));
    node.title = title;
    return node;
  }

  function card(result, rankedBy) {
    const preview = el("div", { className: "preview" });
    const render = AUDIO.has(result.modality) ? audioPreview
      : VIDEO.has(result.modality) ? videoPreview
        : PLOTS.has(result.modality) ? plotPreview
          : result.modality === "text" ? textPreview : imagePreview;
    render(preview, result);
    const meta = el("div", { className: "meta" }, [
      el("span", { className: "name", textContent: result.name, title: result.path }),
      el("span", { className: `badge m-${result.modality}`, textContent: result.modality }),
      scoreLabel(result, rankedBy),
    ]);
    const node = el("article", {
      className: "card", tabIndex: 0, title: `${result.path}\nclick to search with it`,
      dataset: { id: String(result.id), modality: result.modality },
    }, [preview, meta]);
    node.addEventListener("click", (ev) => {
      if (!ev.target.closest("audio, video, a")) searchWithResult(result);
    });
    node.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.target === node) searchWithResult(result);
    });
    return node;
  }

  function thumb(result, className) {
    const img = el("img", { className, src: result.thumb, alt: `${result.modality} preview of ${result.name}` });
    img.addEventListener("error", () => {
      img.replaceWith(el("div", { className: "no-preview", textContent: `no preview (${result.modality})` }));
    }, { once: true });
    return img;
  }

  function imagePreview(box, result) {
    box.append(thumb(result, `thumb m-${result.modality}`));
  }

  function plotPreview(box, result) {
    box.append(thumb(result, "thumb plot"));
  }

  function audioPreview(box, result) {
    const player = el("audio", { controls: true, preload: "metadata", src: result.url });
    box.classList.add("stacked");
    box.append(thumb(result, "thumb spectrogram"), player);
  }

  function videoPreview(box, result) {
    const player = el("video", { controls: true, preload: "metadata", src: result.url, poster: result.thumb,
      muted: true, playsInline: true, className: "player" });
    // A codec this browser cannot decode: keep the poster frame and offer the file itself.
    player.addEventListener("error", () => {
      box.classList.add("stacked");
      player.replaceWith(thumb(result, "thumb poster"));
      box.append(el("a", { className: "cannot-play", href: result.url, target: "_blank", rel: "noopener",
        textContent: "cannot play this codec here: open the file" }));
    }, { once: true });
    box.append(player);
  }

  function textPreview(box, result) {
    const snippet = el("p", { className: "snippet", textContent: "…" });
    box.append(snippet);
    api(result.url, { headers: { Range: `bytes=0-${SNIPPET_BYTES - 1}` } })
      .then(checked)
      .then((resp) => resp.arrayBuffer())
      .then((buf) => {
        const text = new TextDecoder("utf-8").decode(buf.slice(0, SNIPPET_BYTES)).replace(/\uFFFD+$/, "");
        snippet.textContent = text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS)}…` : text;
      })
      .catch((err) => { snippet.textContent = err.message; snippet.classList.add("error"); });
  }

  // ------------------------------------------------------------------ drop zone and form

  function wireDropZone() {
    const drop = $("#drop");
    const input = $("#file");
    const pick = () => input.click();
    drop.addEventListener("click", pick);
    drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); } });
    input.addEventListener("change", () => {
      if (input.files && input.files[0]) searchFile(input.files[0]);
      input.value = "";
    });
    drop.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      if (ev.dataTransfer) ev.dataTransfer.dropEffect = "copy";
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (ev) => {
      ev.preventDefault();
      drop.classList.remove("over");
      const file = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
      if (file) searchFile(file);
    });
    // A file dropped beside the zone must not make the browser leave the page to show it.
    for (const type of ["dragover", "drop"]) window.addEventListener(type, (ev) => ev.preventDefault());
  }

  function wireForm() {
    $("#search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = $("#query").value.trim();
      if (text) searchText(text);
      else setStatus("Type a query, or drop a file.", true);
    });
    $("#mix").addEventListener("change", () => {
      state.mix = MIXES.includes($("#mix").value) ? $("#mix").value : DEFAULT_MIX;
      if (state.query) runSearch();
      else syncAddress();
    });
  }

  function start() {
    tokenFromAddress();
    wireForm();
    wireDropZone();
    const q = fromAddress();
    renderChips();
    loadModalities();
    if (q) {
      $("#query").value = q;
      searchText(q);
    }
  }

  start();
})();
