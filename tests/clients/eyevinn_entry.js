// @eyevinn/webrtc-player ships CommonJS only: the interop test bundles this entry for the browser with esbuild
// (tests/clients/build/eyevinn-player.js), as a web app using the player would.
import { WebRTCPlayer } from "@eyevinn/webrtc-player";

window.WebRTCPlayer = WebRTCPlayer;
