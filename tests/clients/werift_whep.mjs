// A WHEP player written with werift (a WebRTC stack in TypeScript, no browser): plays a streamvis stream,
// counts the video frames it receives (RTP marker bits: werift has no decoder) and the data-channel detections,
// then hangs up with DELETE. Prints one JSON line.
//   node werift_whep.mjs http://127.0.0.1:8080/whep/STREAM FRAMES TIMEOUT_MS
import { RTCPeerConnection } from "werift";

const [url, framesArg, timeoutArg] = process.argv.slice(2);
const framesWanted = Number(framesArg || 30);
const deadline = Date.now() + Number(timeoutArg || 30000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const pc = new RTCPeerConnection({
  iceUseIpv6: false,
  iceAdditionalHostAddresses: ["127.0.0.1"],
  iceFilterCandidatePair: (pair) => pair.localCandidate.host === "127.0.0.1", // stay on loopback
});
pc.addTransceiver("video", { direction: "recvonly" });
const channel = pc.createDataChannel("events");
const seen = { frames: 0, frameMessages: 0, detections: 0 };
channel.onMessage.subscribe((data) => {
  const message = JSON.parse(data.toString());
  if (message.type === "frame") {
    seen.frameMessages += 1;
    seen.detections += message.detections.length;
  }
});
pc.onTrack.subscribe((track) => track.onReceiveRtp.subscribe((rtp) => { if (rtp.header.marker) seen.frames += 1; }));

await pc.setLocalDescription(await pc.createOffer());
while (pc.iceGatheringState !== "complete" && Date.now() < deadline) await sleep(50);
const post = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" },
                                body: pc.localDescription.sdp });
const result = { post: post.status, location: post.headers.get("location"), etag: post.headers.get("etag") };
await pc.setRemoteDescription({ type: "answer", sdp: await post.text() });
while ((seen.frames < framesWanted || seen.frameMessages < 1) && Date.now() < deadline) await sleep(50);
const resource = new URL(result.location, url);
const hangup = await fetch(resource, { method: "DELETE" });
Object.assign(result, seen, { delete: hangup.status });
await pc.close();
console.log(JSON.stringify(result));
process.exit(0);
