// streamvis viewer: picks a stream, connects over /offer, shows the annotated video (or the clean video with the
// layers drawn here, `overlay.js`), the objects from the data channel, live stats, glass-to-glass latency and
// narration; clicks, boxes and words on the video become prompts (`prompts.js`). No build step: ES modules.

import { Percentiles, ServerClock } from "./clock.js";
import { MomentSearch } from "./moments.js";
import { Overlay } from "./overlay.js";
import { Pointer } from "./prompts.js";
import { FrameSync } from "./sync.js";
import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};
let pc = null;
let channel = null;
let frames = 0;
let lastFrames = 0;
let statsTimer = null;
let pingTimer = null;
let iceServers = [];
let pickedObject = null;
let promptCount = 0;
const clock = new ServerClock();
const glassToGlass = new Percentiles();
const timeline = new Timeline($("timeline"));
const overlay = new Overlay($("layers"), {
  boxes: $("layer-boxes"), masks: $("layer-masks"), labels: $("layer-labels"), opacity: $("mask-opacity"),
  classes: $("class-layers"),
});
let shown = null;  // the frame message of the frame on screen
window.streamvisPromptResults = [];

// Every displayed frame: its message (exactly, from its RTP timestamp), the layers drawn for it, and how long it
// took from arriving at the server to this screen.
const sync = new FrameSync($("video"), (message, metadata, synced) => {
  shown = message;
  window.streamvisDisplayed = { frame_index: message.frame_index, synced };
  overlay.draw(message);
  const arrived = clock.toLocal(message.decoded_at_ms);
  if (synced && arrived !== null && metadata && typeof metadata.expectedDisplayTime === "number") {
    glassToGlass.add(metadata.expectedDisplayTime - arrived);
  }
  if (synced) timeline.displayed(message, metadata);
});

function setState(text) { $("state").textContent = text; }

let highlighted = null;  // the track a search pointed out in the live video
let inViewNow = new Set();  // the track ids of the last frame's objects
const moments = new MomentSearch({
  section: $("moments"), form: $("moments-form"), input: $("moments-query"), status: $("moments-status"),
  list: $("moments-list"), player: $("moment-player"), caption: $("moment-caption"),
}, {
  headers,
  watching: () => (pc ? $("stream").value : null),
  inView: (trackId) => inViewNow.has(trackId),
  highlight: (trackId) => {
    highlighted = trackId;
    overlay.highlighted = trackId;
    window.streamvisHighlighted = trackId;
  },
});

async function loadStreams() {
  const resp = await fetch("/streams", { headers });
  if (!resp.ok) { setState(`Cannot list streams (${resp.status})`); return false; }
  const { streams, ice_servers: ice, search } = await resp.json();
  iceServers = ice || [];
  moments.enable(Boolean(search));
  const select = $("stream");
  select.replaceChildren(...streams.map((s) => new Option(`${s.id} (${s.status})`, s.id)));
  const wanted = params.get("stream");
  if (wanted && !streams.some((s) => s.id === wanted)) {
    setState(`No stream named "${wanted}" (streams: ${streams.map((s) => s.id).join(", ") || "none"})`);
    return false;
  }
  if (wanted) select.value = wanted;
  if (!streams.length) setState("No streams yet: publish a camera, or start the server with --source");
  return Boolean(wanted) || streams.length === 1;
}

function showObjects(detections) {
  inViewNow = new Set(detections.map((d) => d.track_id).filter((t) => t !== null && t !== undefined));
  const items = detections.map((d) => {
    const li = document.createElement("li");
    const id = d.track_id === null || d.track_id === undefined ? "" : ` #${d.track_id}`;
    const score = d.score === null || d.score === undefined ? "" : ` ${(d.score * 100).toFixed(0)}%`;
    if (d.track_id === null || d.track_id === undefined) {
      li.textContent = `${d.class_name}${id}${score}`;
    } else {  // a tracked object can be picked, to refine or remove it
      const button = document.createElement("button");
      button.type = "button";
      button.className = "object";
      button.textContent = `${d.class_name}${id}${score}`;
      button.setAttribute("aria-pressed", String(pickedObject === d.track_id));
      if (highlighted === d.track_id) { button.classList.add("highlighted"); button.setAttribute("aria-current", "true"); }
      button.addEventListener("click", () => pick(pickedObject === d.track_id ? null : d.track_id));
      li.append(button);
    }
    return li;
  });
  $("objects").replaceChildren(...items);
}

// -- prompts ------------------------------------------------------------------------------------------------
function pick(objectId) {
  pickedObject = objectId;
  $("picked").hidden = objectId === null;
  $("picked-name").textContent = objectId === null ? "" : `#${objectId}`;
  setPromptStatus(objectId === null ? "" : `Object #${objectId} picked: clicks now refine it (Alt-click: not it)`);
}

function setPromptStatus(text) { $("prompt-status").textContent = text; }

function sendPrompt(prompt) {
  if (!channel || channel.readyState !== "open") { setPromptStatus("Not connected"); return; }
  promptCount += 1;
  const message = { type: "prompt", prompt: { id: `p${promptCount}`, ...prompt } };
  channel.send(JSON.stringify(message));
  setPromptStatus(`Sent ${prompt.type}${prompt.frame_index !== undefined ? ` on frame ${prompt.frame_index}` : ""}…`);
}

function onPromptResult(msg) {
  window.streamvisPromptResults.push(msg);
  if (!msg.ok) { setPromptStatus(msg.error); return; }
  if (msg.removed && msg.removed.length) {
    setPromptStatus(`Removed #${msg.removed.join(", #")}`);
    if (msg.removed.includes(pickedObject)) pick(null);
    return;
  }
  const ids = (msg.object_ids || []).map((id) => `#${id}`).join(", ");
  setPromptStatus(ids ? `Object ${ids} on frame ${msg.frame_index}${msg.note ? ` (${msg.note})` : ""}`
    : msg.note || "Nothing found");
}

new Pointer($("stage"), $("video"), overlay, {
  frameShown: () => shown || sync.latest,
  send: sendPrompt,
  picked: () => pickedObject,
  pick,
});

// Narration at the listener's level of detail (brief / normal / detailed: the server sends all three); an urgent
// item (a hazard, an answer) interrupts whatever is being said and is announced assertively.
function narrationText(msg) {
  const level = $("verbosity").value;
  if (msg.texts && level in msg.texts) return msg.texts[level];
  return msg.text;
}

function speak(text, urgent) {
  if (!$("speak").checked || !window.speechSynthesis || !text) return;
  if (urgent) window.speechSynthesis.cancel();
  const utterance = new SpeechSynthesisUtterance(text);
  utterance.rate = Number($("rate").value);
  window.speechSynthesis.speak(utterance);
}

function addNarration(text, urgent = false) {
  if (!text) return;  // nothing at this level of detail
  window.streamvisNarrations = (window.streamvisNarrations || 0) + 1;
  speak(text, urgent);
  if (urgent) $("alert").textContent = text;
  const box = $("narration");
  if (box.dataset.started !== "1") { box.textContent = ""; box.dataset.started = "1"; }
  const p = document.createElement("p");
  p.textContent = text;
  if (urgent) p.className = "urgent";
  box.append(p);
  while (box.childElementCount > 20) box.firstElementChild.remove();
}

function onMessage(event) {
  const msg = JSON.parse(event.data);
  window.streamvisMessages = (window.streamvisMessages || 0) + 1;
  if (msg.type === "frame") {
    window.streamvisLastFrame = msg;
    sync.add(msg);
    timeline.addEncoded(msg.encoded);
    showObjects(msg.detections || []);
    if (msg.description) addNarration(msg.description.text, msg.description.urgent);
    if (msg.stats) {
      $("server-fps").textContent = msg.stats.fps_out.toFixed(1);
      $("dropped").textContent = String(msg.stats.dropped);
      const lat = (msg.stats.latency_ms || {}).server_latency;
      if (lat) $("latency").textContent = `${lat.p50.toFixed(0)} / ${lat.p95.toFixed(0)} ms`;
      const budget = msg.stats.latency_budget;  // what the server gives up to hold its budget, and why
      if (budget) {
        $("budget").textContent = `${budget.budget_ms} ms: ${budget.plan}`;
        $("budget").title = budget.reason;
      }
    }
  } else if (msg.type === "hello" || msg.type === "clock") {
    sync.setOrigin(msg.rtp_origin);
    if (msg.type === "hello") $("find-form").hidden = msg.can_prompt === false;
  } else if (msg.type === "pong") {
    clock.pong(msg);
  } else if (msg.type === "prompt_result") {
    onPromptResult(msg);
  } else if (msg.type === "status") {
    setState(`Stream ${msg.stream}: ${msg.status}`);
  } else if (msg.type === "narration") {
    addNarration(msg.question ? `${msg.question} — ${msg.text}` : narrationText(msg), Boolean(msg.urgent));
  }
}
// The page is a module, so its functions are not globals: this hook feeds one message as if it came over the data
// channel, for tests and for tools that drive the viewer.
window.streamvisReceive = (message) => onMessage({ data: JSON.stringify(message) });

async function connect(event) {
  if (event) event.preventDefault();
  await disconnect();
  const stream = $("stream").value;
  const layers = $("client-layers").checked ? "client" : "burned";
  pc = new RTCPeerConnection({ iceServers });
  pc.addTransceiver("video", { direction: "recvonly" });
  channel = pc.createDataChannel("events");
  channel.onmessage = onMessage;
  channel.onopen = () => { for (let i = 0; i < 5; i += 1) setTimeout(() => clock.ping(channel), i * 200); };
  pc.ontrack = (e) => { $("video").srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => setState(`Connection: ${pc ? pc.connectionState : "closed"}`);
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  const resp = await fetch("/offer", {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", stream, layers }),
  });
  if (!resp.ok) { setState(`Server refused (${resp.status}): ${await resp.text()}`); return; }
  const answer = await resp.json();
  await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
  overlay.setEnabled(layers === "client");
  sync.start();
  $("connect").disabled = true;
  $("disconnect").disabled = false;
  statsTimer = setInterval(updateStats, 1000);
  pingTimer = setInterval(() => clock.ping(channel), 2000);
}

function waitForIce(conn) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (conn.iceGatheringState === "complete") resolve(); };
    conn.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);
  });
}

async function updateStats() {
  if (!pc) return;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      frames = s.framesDecoded || 0;
      $("frames").textContent = String(frames);
      $("fps").textContent = String(frames - lastFrames);
      lastFrames = frames;
      window.streamvisFramesDecoded = frames;
    }
  });
  const g2g = glassToGlass.summary();
  window.streamvisGlassToGlass = g2g;
  $("glass").textContent = g2g ? `${g2g.p50.toFixed(0)} / ${g2g.p95.toFixed(0)} ms` : "-";
  timeline.update(clock);
}

async function disconnect() {
  if (statsTimer) clearInterval(statsTimer);
  if (pingTimer) clearInterval(pingTimer);
  statsTimer = pingTimer = null;
  sync.stop();
  shown = null;
  overlay.setEnabled(false);
  channel = null;
  if (pc) { pc.close(); pc = null; }
  $("connect").disabled = false;
  $("disconnect").disabled = true;
}

// Publish this device's camera over WHIP, then watch it annotated (the phone-in-hand use; needs HTTPS off
// localhost, because browsers give pages the camera only in a secure context).
let publisher = null;
async function publish(event) {
  event.preventDefault();
  const name = $("publish-name").value;
  if (!navigator.mediaDevices) { setState("This page needs HTTPS to use the camera"); return; }
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
  if (publisher) publisher.close();
  publisher = new RTCPeerConnection({ iceServers });
  media.getVideoTracks().forEach((t) => publisher.addTransceiver(t, { direction: "sendonly" }));
  await publisher.setLocalDescription(await publisher.createOffer());
  await waitForIce(publisher);
  const resp = await fetch(`/whip/${encodeURIComponent(name)}`, {
    method: "POST", headers: { ...headers, "Content-Type": "application/sdp" }, body: publisher.localDescription.sdp,
  });
  if (resp.status !== 201) { setState(`Publishing refused (${resp.status}): ${await resp.text()}`); return; }
  await publisher.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  setState(`Publishing camera as ${name}`);
  await new Promise((r) => setTimeout(r, 500));
  await loadStreams();
  $("stream").value = name;
  await connect();
}

async function ask(event) {
  if (event) event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  setState("Asking…");
  const resp = await fetch("/ask", {
    method: "POST", headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify({ question, stream: $("stream").value }),
  });
  // The answer also arrives as a narration event on the data channel (spoken there); show errors here.
  if (!resp.ok) setState(`No answer (${resp.status}): ${(await resp.json()).error}`);
  else setState("Answered");
}

const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
if (Recognition) {
  $("ask-voice").hidden = false;
  $("ask-voice").addEventListener("click", () => {
    const rec = new Recognition();
    rec.onresult = (e) => { $("question").value = e.results[0][0].transcript; ask(); };
    rec.start();
  });
}

async function find(event) {
  event.preventDefault();
  const text = $("find-text").value.trim();
  if (text) sendPrompt({ type: "text", text });
}

$("find-form").addEventListener("submit", find);
$("remove-picked").addEventListener("click", () => {
  if (pickedObject !== null) sendPrompt({ type: "remove", object_id: pickedObject });
});
$("unpick").addEventListener("click", () => pick(null));
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && pickedObject !== null) pick(null); });
$("client-layers").addEventListener("change", () => { if (pc) connect(); });
$("ask-form").addEventListener("submit", ask);
$("publish-form").addEventListener("submit", publish);
$("controls").addEventListener("submit", connect);
$("disconnect").addEventListener("click", () => { disconnect(); setState("Disconnected"); });
// ?layers=client draws the layers here from the start.
$("client-layers").checked = params.get("layers") === "client";
// Plays at once when the choice is clear (?stream=NAME, or a server with one stream); ?autoplay=0 waits for Connect.
loadStreams().then((clear) => {
  const autoplay = params.get("autoplay");
  if (autoplay === "1" || (autoplay !== "0" && clear)) connect();
});
