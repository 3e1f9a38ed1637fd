// streamvis viewer: picks a stream, connects over /offer, shows the annotated video, the objects from the
// data channel, live stats and narration. No build step; plain ES2020.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get("token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};
let pc = null;
let frames = 0;
let lastFrames = 0;
let statsTimer = null;
let iceServers = [];

function setState(text) { $("state").textContent = text; }

async function loadStreams() {
  const resp = await fetch("/streams", { headers });
  if (!resp.ok) { setState(`Cannot list streams (${resp.status})`); return false; }
  const { streams, ice_servers: ice } = await resp.json();
  iceServers = ice || [];
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
  const items = detections.map((d) => {
    const li = document.createElement("li");
    const id = d.track_id === null || d.track_id === undefined ? "" : ` #${d.track_id}`;
    const score = d.score === null || d.score === undefined ? "" : ` ${(d.score * 100).toFixed(0)}%`;
    li.textContent = `${d.class_name}${id}${score}`;
    return li;
  });
  $("objects").replaceChildren(...items);
}

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
    showObjects(msg.detections || []);
    if (msg.description) addNarration(msg.description.text, msg.description.urgent);
    if (msg.stats) {
      $("server-fps").textContent = msg.stats.fps_out.toFixed(1);
      $("dropped").textContent = String(msg.stats.dropped);
      const lat = (msg.stats.latency_ms || {}).server_latency;
      if (lat) $("latency").textContent = `${lat.p50.toFixed(0)} / ${lat.p95.toFixed(0)} ms`;
    }
  } else if (msg.type === "status") {
    setState(`Stream ${msg.stream}: ${msg.status}`);
  } else if (msg.type === "narration") {
    addNarration(msg.question ? `${msg.question} — ${msg.text}` : narrationText(msg), Boolean(msg.urgent));
  }
}

async function connect(event) {
  if (event) event.preventDefault();
  await disconnect();
  const stream = $("stream").value;
  pc = new RTCPeerConnection({ iceServers });
  pc.addTransceiver("video", { direction: "recvonly" });
  const channel = pc.createDataChannel("events");
  channel.onmessage = onMessage;
  pc.ontrack = (e) => { $("video").srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => setState(`Connection: ${pc ? pc.connectionState : "closed"}`);
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  const resp = await fetch("/offer", {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", stream }),
  });
  if (!resp.ok) { setState(`Server refused (${resp.status}): ${await resp.text()}`); return; }
  await pc.setRemoteDescription(await resp.json());
  $("connect").disabled = true;
  $("disconnect").disabled = false;
  statsTimer = setInterval(updateStats, 1000);
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
}

async function disconnect() {
  if (statsTimer) clearInterval(statsTimer);
  statsTimer = null;
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

$("ask-form").addEventListener("submit", ask);
$("publish-form").addEventListener("submit", publish);
$("controls").addEventListener("submit", connect);
$("disconnect").addEventListener("click", () => { disconnect(); setState("Disconnected"); });
// Plays at once when the choice is clear (?stream=NAME, or a server with one stream); ?autoplay=0 waits for Connect.
loadStreams().then((clear) => {
  const autoplay = params.get("autoplay");
  if (autoplay === "1" || (autoplay !== "0" && clear)) connect();
});
