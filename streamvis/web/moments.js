// Finding moments by words (`serve --index`): the search box asks `GET /search`, lists the moments found with
// their thumbnails, plays a recorded moment (`GET /search/clip`, cut from the stream's recording) and points out a
// track that is in view now on the stream being watched.

function clockTime(iso) { return iso ? iso.slice(11, 19) : ""; }

export class MomentSearch {
  // els: {section, form, input, status, list, player, caption}; hooks: {headers, watching(), inView(trackId),
  // highlight(trackId)}
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.recorded = new Set();
    this.results = [];
    els.form.addEventListener("submit", (e) => { e.preventDefault(); this.search(); });
  }

  enable(on) { this.els.section.hidden = !on; }

  say(text) { this.els.status.textContent = text; }

  async search() {
    const q = this.els.input.value.trim();
    if (!q) { this.say("Type what to find, e.g. a person at the door"); return; }
    this.say(`Searching for “${q}”…`);
    let body;
    try {
      const resp = await fetch(`/search?${new URLSearchParams({ q, top: "10" })}`, { headers: this.hooks.headers });
      body = await resp.json();
      if (!resp.ok) { this.say(`Search refused (${resp.status}): ${body.error}`); return; }
    } catch (err) {
      this.say(`Search failed: ${err}`);
      return;
    }
    this.recorded = new Set(body.recorded || []);
    this.results = body.moments;
    window.streamvisSearch = { query: q, moments: body.moments };
    this.els.list.replaceChildren(...body.moments.map((m, i) => this.item(m, i)));
    this.say(body.moments.length ? `${body.moments.length} moments for “${q}”, best first`
      : `Nothing indexed yet matches “${q}”`);
  }

  describe(m) {
    const what = m.kind === "track" ? `${m.class} #${m.track}` : "scene";
    const when = m.start === m.end ? clockTime(m.start) : `${clockTime(m.start)} to ${clockTime(m.end)}`;
    return `${what} on ${m.stream}, ${when}`;
  }

  item(m, i) {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = `/search/thumbnail/${m.thumbnail.split("/").map(encodeURIComponent).join("/")}`;
    img.alt = this.describe(m);
    img.width = 96;
    img.loading = "lazy";
    const text = document.createElement("span");
    text.textContent = `${i + 1}. ${this.describe(m)} (similarity ${m.similarity.toFixed(2)})`;
    li.append(img, text);
    if (this.recorded.has(m.stream)) {
      const play = document.createElement("button");
      play.type = "button";
      play.textContent = "Play";
      play.setAttribute("aria-label", `Play ${this.describe(m)}`);
      play.addEventListener("click", () => this.play(m));
      li.append(play);
    }
    if (m.kind === "track" && m.stream === this.hooks.watching()) {
      const live = document.createElement("button");
      live.type = "button";
      live.textContent = "Show live";
      live.setAttribute("aria-label", `Show live ${m.class} #${m.track}`);  // the visible words first (WCAG 2.5.3)
      live.addEventListener("click", () => this.showLive(m));
      li.append(live);
    }
    return li;
  }

  // The clip is fetched first, so that a moment that cannot be played says why (not recorded, its segment still
  // being written) and the page's credentials go with the request.
  async play(m) {
    const what = this.describe(m);
    const query = new URLSearchParams({ stream: m.stream, from: String(m.start_s - 1), to: String(m.end_s + 1) });
    this.say(`Loading ${what}…`);
    const resp = await fetch(`/search/clip?${query}`, { headers: this.hooks.headers });
    if (!resp.ok) {
      let reason = `${resp.status}`;
      try { reason = (await resp.json()).error; } catch (err) { /* not JSON: the status says it */ }
      this.say(`Cannot play ${what}: ${reason}`);
      return;
    }
    const player = this.els.player;
    if (player.src.startsWith("blob:")) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(await resp.blob());
    player.hidden = false;
    this.els.caption.textContent = `Recording: ${what}`;
    this.els.caption.hidden = false;
    player.onloadeddata = () => {
      window.streamvisClipLoaded = { stream: m.stream, duration: player.duration };
      this.say(`Playing ${what}`);
    };
    player.focus();
    player.play().catch(() => {});
  }

  showLive(m) {
    if (this.hooks.inView(m.track)) {
      this.hooks.highlight(m.track);
      this.say(`${m.class} #${m.track} is in view now: highlighted in the video and in Objects`);
    } else {
      this.hooks.highlight(null);
      this.say(`${m.class} #${m.track} is not in view now${this.recorded.has(m.stream) ? "; Play shows the recording" : ""}`);
    }
  }
}
