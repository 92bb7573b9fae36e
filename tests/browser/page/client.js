// The Sensocto browser call client, as its membrane_client.js wrapper drives
// @jellyfish-dev/membrane-webrtc-js and phoenix, instrumented for tests.
//
// Everything the page can observe is kept in window.peerState; the driver
// reads it. Query parameters: socket, room, user, name, audio=0, video=0,
// statsMs (default 500).

import { Socket } from "phoenix";
import { WebRTCEndpoint } from "@jellyfish-dev/membrane-webrtc-js";

const startedAt = performance.now();
const now = () => Math.round(performance.now() - startedAt);
const query = new URLSearchParams(location.search);
const params = {
  socket: query.get("socket"),
  room: query.get("room"),
  user: query.get("user"),
  name: query.get("name") || query.get("user"),
  audio: query.get("audio") !== "0",
  video: query.get("video") !== "0",
  statsMs: Number(query.get("statsMs") ?? 500),
};

const state = {
  params,
  phase: "starting",
  timeline: [],
  socket: { opened: 0, closes: 0, errors: 0 },
  joinReply: null,
  iceServers: null,
  endpointId: null,
  media: { local: [] },
  mediaEventsSent: [],
  mediaEventsReceived: [],
  offers: [],
  answers: [],
  localCandidates: [],
  localTracks: [],
  remoteTracksAdded: [],
  remoteTracksReady: [],
  remoteTracksRemoved: [],
  endpointsAdded: [],
  endpointsRemoved: [],
  peerConnections: [],
  selectedPairChanges: [],
  stats: { samples: 0, latest: null },
  left: false,
};
const errors = [];
window.peerState = state;
window.peerErrors = errors;

const mark = (what) => state.timeline.push({ t: now(), what });
const fail = (where, err) => {
  errors.push({ t: now(), where, msg: String(err && err.stack ? err.stack : err) });
};
window.addEventListener("error", (e) => fail("window", e.message));
window.addEventListener("unhandledrejection", (e) => fail("rejection", e.reason));

// The ufrag of an SDP, to see ICE restarts on the wire.
const ufragOf = (sdp) => (/a=ice-ufrag:(\S+)/.exec(sdp) || [])[1] || null;

// Capture the library's private peer connection for stats and candidates.
const NativePeerConnection = window.RTCPeerConnection;
window.RTCPeerConnection = function (config, ...rest) {
  const pc = new NativePeerConnection(config, ...rest);
  const record = { config: JSON.parse(JSON.stringify(config || {})), states: [] };
  state.peerConnections.push(record);
  window.peerConnection = pc;
  const note = (what) => record.states.push({ t: now(), what });
  pc.addEventListener("connectionstatechange", () => note("connection:" + pc.connectionState));
  pc.addEventListener("iceconnectionstatechange", () =>
    note("ice:" + pc.iceConnectionState),
  );
  pc.addEventListener("signalingstatechange", () => {
    note("signaling:" + pc.signalingState);
    watchSelectedPair(pc);
  });
  pc.addEventListener("icecandidate", (e) => {
    if (!e.candidate) return;
    const c = e.candidate;
    state.localCandidates.push({
      t: now(),
      address: c.address,
      port: c.port,
      protocol: c.protocol,
      type: c.type,
      ufrag: c.usernameFragment,
    });
  });
  return pc;
};
window.RTCPeerConnection.prototype = NativePeerConnection.prototype;

// Every switch of the selected candidate pair, with the ICE generations
// (ufrags) of both ends: an ICE restart shows as a switch to the new ones.
const watchedTransports = new WeakSet();
function watchSelectedPair(pc) {
  for (const sender of pc.getSenders()) {
    const ice = sender.transport && sender.transport.iceTransport;
    if (!ice || watchedTransports.has(ice)) continue;
    watchedTransports.add(ice);
    ice.addEventListener("selectedcandidatepairchange", () => {
      const pair = ice.getSelectedCandidatePair();
      if (!pair) return;
      state.selectedPairChanges.push({
        t: now(),
        local: { address: pair.local.address, ufrag: pair.local.usernameFragment },
        remote: { address: pair.remote.address, ufrag: pair.remote.usernameFragment },
      });
    });
  }
}

const socket = new Socket(params.socket, { params: {} });
socket.onOpen(() => {
  state.socket.opened += 1;
  mark("socket-open");
});
socket.onClose(() => {
  state.socket.closes += 1;
});
socket.onError(() => {
  state.socket.errors += 1;
  if (!state.socket.opened) fail("socket", "cannot open websocket");
});

const webrtc = new WebRTCEndpoint();
window.webrtc = webrtc;
const channel = socket.channel("call:" + params.room, {
  user_id: params.user,
  user_info: { name: params.name },
});

// Outgoing media events, with Sensocto's fix: the library sends candidates
// without sdpMid, which the server's candidate decoder requires.
webrtc.on("sendMediaEvent", (text) => {
  let event = JSON.parse(text);
  if (
    event.type === "custom" &&
    event.data &&
    event.data.type === "candidate" &&
    event.data.data &&
    event.data.data.sdpMLineIndex !== undefined &&
    event.data.data.sdpMid === undefined
  ) {
    event.data.data.sdpMid = String(event.data.data.sdpMLineIndex);
    text = JSON.stringify(event);
  }
  const type = event.type === "custom" ? event.data.type : event.type;
  state.mediaEventsSent.push({ t: now(), type, event });
  if (type === "sdpOffer") {
    const offer = event.data.data;
    state.offers.push({
      t: now(),
      ufrag: ufragOf(offer.sdpOffer.sdp),
      midToTrackId: offer.midToTrackId,
      trackIdToTrackMetadata: offer.trackIdToTrackMetadata,
    });
  }
  channel.push("media_event", { data: text });
});

channel.on("media_event", (payload) => {
  const text = typeof payload.data === "string" ? payload.data : JSON.stringify(payload.data);
  try {
    const event = JSON.parse(text);
    const type = event.type === "custom" ? event.data.type : event.type;
    state.mediaEventsReceived.push({ t: now(), type, event });
    if (type === "sdpAnswer") {
      state.answers.push({ t: now(), ufrag: ufragOf(event.data.data.sdp) });
    }
  } catch (e) {
    fail("media_event-parse", e);
  }
  try {
    webrtc.receiveMediaEvent(text);
  } catch (e) {
    fail("receiveMediaEvent", e);
  }
});

webrtc.on("connected", (endpointId, otherEndpoints) => {
  state.endpointId = endpointId;
  state.phase = "connected";
  mark("connected");
  addLocalTracks();
});
webrtc.on("connectionError", (msg) => fail("connectionError", msg));
webrtc.on("endpointAdded", (e) => state.endpointsAdded.push({ t: now(), id: e.id }));
webrtc.on("endpointRemoved", (e) => state.endpointsRemoved.push({ t: now(), id: e.id }));
webrtc.on("trackAdded", (ctx) => {
  state.remoteTracksAdded.push({
    t: now(),
    trackId: ctx.trackId,
    endpointId: ctx.endpoint.id,
    metadata: ctx.metadata,
    afterConnected: state.endpointId !== null,
  });
});
webrtc.on("trackReady", (ctx) => {
  const track = ctx.track;
  const entry = {
    t: now(),
    kind: track.kind,
    trackId: ctx.trackId,
    mediaTrackId: track.id,
    endpointId: ctx.endpoint.id,
    readyState: track.readyState,
    muted: track.muted,
    ended: false,
    removed: false,
  };
  state.remoteTracksReady.push(entry);
  track.addEventListener("ended", () => {
    entry.ended = true;
    entry.readyState = "ended";
  });
  track.addEventListener("mute", () => (entry.muted = true));
  track.addEventListener("unmute", () => (entry.muted = false));
  const element = document.createElement(track.kind === "video" ? "video" : "audio");
  element.muted = true;
  element.autoplay = true;
  element.playsInline = true;
  element.dataset.trackId = ctx.trackId;
  element.srcObject = ctx.stream || new MediaStream([track]);
  document.getElementById("remote").appendChild(element);
  element.play().catch(() => {});
});
webrtc.on("trackRemoved", (ctx) => {
  if (!ctx) return;
  state.remoteTracksRemoved.push({ t: now(), trackId: ctx.trackId, endpointId: ctx.endpoint.id });
  for (const entry of state.remoteTracksReady) {
    if (entry.trackId === ctx.trackId) entry.removed = true;
  }
  for (const el of document.querySelectorAll("#remote [data-track-id]")) {
    if (el.dataset.trackId === ctx.trackId) el.remove();
  }
});

const mediaPromise = navigator.mediaDevices
  .getUserMedia({
    audio: params.audio,
    video: params.video ? { width: 640, height: 480 } : false,
  })
  .then((stream) => {
    state.media.local = stream.getTracks().map((t) => ({
      kind: t.kind,
      id: t.id,
      label: t.label,
      readyState: t.readyState,
    }));
    mark("media");
    return stream;
  })
  .catch((e) => {
    fail("getUserMedia", e);
    throw e;
  });

// Like Sensocto: every local track, all at once (the library queues them, so
// audio and video are negotiated in two rounds), with the metadata browsers
// effectively send: {}.
async function addLocalTracks() {
  const stream = await mediaPromise;
  for (const track of stream.getTracks()) {
    const entry = { kind: track.kind, mediaTrackId: track.id, trackId: null, error: null };
    state.localTracks.push(entry);
    Promise.resolve(webrtc.addTrack(track, stream, {}))
      .then((trackId) => {
        entry.trackId = trackId;
        entry.negotiatedAt = now();
      })
      .catch((e) => {
        entry.error = String(e);
        fail("addTrack", e);
      });
  }
  state.phase = "tracks-added";
}

function joinCall() {
  state.phase = "joining";
  channel
    .join()
    .receive("ok", (reply) => {
      if (state.joinReply !== null) return; // phoenix re-fires ok on rejoin
      state.joinReply = reply;
      state.phase = "joined";
      mark("joined");
      // Like Sensocto's wrapper: ICE servers from the join reply, and every
      // transport allowed (the library hard-codes relay).
      state.iceServers = reply.ice_servers || [];
      webrtc.rtcConfig.iceServers = [...state.iceServers];
      webrtc.rtcConfig.iceTransportPolicy = "all";
      channel
        .push("join_call", {})
        .receive("ok", (r) => {
          state.phase = "call-joined";
          state.joinCallReply = r;
          mark("call-joined");
          webrtc.connect({ displayName: params.name });
        })
        .receive("error", (e) => {
          state.phase = "join-call-failed";
          fail("join_call", JSON.stringify(e));
        })
        .receive("timeout", () => fail("join_call", "timeout"));
    })
    .receive("error", (e) => {
      state.phase = "join-failed";
      fail("join", JSON.stringify(e));
    })
    .receive("timeout", () => fail("join", "timeout"));
}

// Leave like Sensocto's browser: disconnect the endpoint, leave the call,
// leave the channel.
window.leaveCall = () =>
  new Promise((resolve) => {
    state.phase = "leaving";
    try {
      webrtc.disconnect();
    } catch (e) {
      fail("disconnect", e);
    }
    const done = () => {
      channel.leave();
      state.left = true;
      state.phase = "left";
      mark("left");
      resolve(true);
    };
    channel.push("leave_call", {}).receive("ok", done).receive("error", done).receive("timeout", done);
  });

const describeCandidate = (c) =>
  c
    ? {
        address: c.address,
        port: c.port,
        type: c.candidateType,
        protocol: c.protocol,
        ufrag: c.usernameFragment ?? null,
      }
    : null;

async function sampleStats() {
  const pc = window.peerConnection;
  if (!pc || pc.connectionState === "closed") return;
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const inbound = [];
  const outbound = {};
  const pairs = [];
  const remoteCandidates = [];
  let selectedPair = null;
  let dtlsState = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp") {
      const ready = state.remoteTracksReady.find((r) => r.mediaTrackId === s.trackIdentifier);
      inbound.push({
        kind: s.kind,
        mid: s.mid,
        trackId: ready ? ready.trackId : null,
        endpointId: ready ? ready.endpointId : null,
        packetsReceived: s.packetsReceived || 0,
        bytesReceived: s.bytesReceived || 0,
        framesDecoded: s.framesDecoded || 0,
        totalSamplesReceived: s.totalSamplesReceived || 0,
        codec: byId.get(s.codecId)?.mimeType || null,
      });
    } else if (s.type === "outbound-rtp") {
      outbound[s.kind] = {
        packetsSent: s.packetsSent || 0,
        bytesSent: s.bytesSent || 0,
        framesEncoded: s.framesEncoded || 0,
        codec: byId.get(s.codecId)?.mimeType || null,
      };
    } else if (s.type === "transport") {
      dtlsState = s.dtlsState;
      const pair = byId.get(s.selectedCandidatePairId);
      if (pair) {
        selectedPair = {
          state: pair.state,
          nominated: pair.nominated,
          local: describeCandidate(byId.get(pair.localCandidateId)),
          remote: describeCandidate(byId.get(pair.remoteCandidateId)),
        };
      }
    } else if (s.type === "candidate-pair") {
      pairs.push({
        state: s.state,
        nominated: s.nominated,
        bytesSent: s.bytesSent || 0,
        requestsSent: s.requestsSent || 0,
        local: describeCandidate(byId.get(s.localCandidateId)),
        remote: describeCandidate(byId.get(s.remoteCandidateId)),
      });
    } else if (s.type === "remote-candidate") {
      remoteCandidates.push(describeCandidate(s));
    }
  });
  const sum = (kind, key) =>
    inbound.filter((s) => s.kind === kind).reduce((n, s) => n + s[key], 0);
  state.stats.samples += 1;
  state.stats.latest = {
    t: now(),
    connectionState: pc.connectionState,
    iceConnectionState: pc.iceConnectionState,
    signalingState: pc.signalingState,
    dtlsState,
    selectedPair,
    pairs,
    remoteCandidates,
    inbound,
    inboundTotal: {
      audio: { packetsReceived: sum("audio", "packetsReceived") },
      video: {
        packetsReceived: sum("video", "packetsReceived"),
        framesDecoded: sum("video", "framesDecoded"),
      },
    },
    outbound,
  };
}

if (!params.socket || !params.room || !params.user) {
  state.phase = "bad-params";
  fail("params", "socket, room and user are required");
} else {
  socket.connect();
  joinCall();
  if (params.statsMs > 0) {
    setInterval(() => sampleStats().catch((e) => fail("getStats", e)), params.statsMs);
  }
}
