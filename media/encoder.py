"""How this bot's video is encoded now: a VP8 encoder whose rate follows the tier.

aiortc's own ``Vp8Encoder`` (through PyAV's libvpx context) clamps its target to
250 kbps-1.5 Mbps and rebuilds the codec, with a keyframe, on every change over
10 %. PyAV accepts a new ``bit_rate`` on an open context, but FFmpeg's libvpx
wrapper never passes it on to libvpx. This module therefore drives the libvpx
library that the PyAV wheel bundles directly through ctypes, and changes the
rate with ``vpx_codec_enc_config_set``, which libvpx applies to the running
rate control without a keyframe.

Pinned to libvpx 1.16 (encoder ABI 39, as bundled with PyAV 18.1) and to
aiortc 1.16.0 (the private encoder slot of ``RTCRtpSender``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase
from aiortc.rtcrtpsender import RTCRtpSender
from av.frame import Frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierVideo:
    """Frame rate and bitrate cap a tier asks of the video sender."""

    fps: int
    max_bitrate: int


# The browser's AdaptiveProducer table (call-channel.md §6.3).
BROWSER_TIER_VIDEO: Mapping[str, TierVideo] = {
    "active": TierVideo(fps=30, max_bitrate=2_500_000),
    "recent": TierVideo(fps=15, max_bitrate=500_000),
    "viewer": TierVideo(fps=5, max_bitrate=150_000),
    "idle": TierVideo(fps=5, max_bitrate=100_000),
}

DEFAULT_MAX_BITRATE = BROWSER_TIER_VIDEO["viewer"].max_bitrate
MIN_BITRATE = 30_000
MAX_BITRATE = 10_000_000

# libvpx 1.16 constants (vpx_encoder.h, vpx_image.h, vp8cx.h).
_ENCODER_ABI_VERSION = 39
_VPX_CODEC_OK = 0
_VPX_CODEC_CX_FRAME_PKT = 0
_VPX_FRAME_IS_KEY = 0x1
_VPX_EFLAG_FORCE_KF = 0x1
_VPX_DL_REALTIME = 1
_VPX_IMG_FMT_I420 = 0x102
_VPX_RC_ONE_PASS = 0
_VPX_CBR = 1
_VPX_KF_AUTO = 1
_VP8E_SET_CPUUSED = 13
_VP8E_SET_NOISE_SENSITIVITY = 15
_VP8E_SET_STATIC_THRESHOLD = 17
_VP8E_SET_TOKEN_PARTITIONS = 18
_VP8E_SET_MAX_INTRA_BITRATE_PCT = 26

_SS_MAX_LAYERS = 5
_TS_MAX_LAYERS = 5
_TS_MAX_PERIODICITY = 16
_MAX_LAYERS = 12


class _FixedBuf(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("sz", ctypes.c_size_t)]


class _Rational(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("den", ctypes.c_int)]


class _EncCfg(ctypes.Structure):
    """``vpx_codec_enc_cfg_t`` of libvpx 1.16 (504 bytes on x86-64)."""

    _fields_ = [
        ("g_usage", ctypes.c_uint),
        ("g_threads", ctypes.c_uint),
        ("g_profile", ctypes.c_uint),
        ("g_w", ctypes.c_uint),
        ("g_h", ctypes.c_uint),
        ("g_bit_depth", ctypes.c_int),
        ("g_input_bit_depth", ctypes.c_uint),
        ("g_timebase", _Rational),
        ("g_error_resilient", ctypes.c_uint32),
        ("g_pass", ctypes.c_int),
        ("g_lag_in_frames", ctypes.c_uint),
        ("rc_dropframe_thresh", ctypes.c_uint),
        ("rc_resize_allowed", ctypes.c_uint),
        ("rc_scaled_width", ctypes.c_uint),
        ("rc_scaled_height", ctypes.c_uint),
        ("rc_resize_up_thresh", ctypes.c_uint),
        ("rc_resize_down_thresh", ctypes.c_uint),
        ("rc_end_usage", ctypes.c_int),
        ("rc_twopass_stats_in", _FixedBuf),
        ("rc_firstpass_mb_stats_in", _FixedBuf),
        ("rc_target_bitrate", ctypes.c_uint),
        ("rc_min_quantizer", ctypes.c_uint),
        ("rc_max_quantizer", ctypes.c_uint),
        ("rc_undershoot_pct", ctypes.c_uint),
        ("rc_overshoot_pct", ctypes.c_uint),
        ("rc_buf_sz", ctypes.c_uint),
        ("rc_buf_initial_sz", ctypes.c_uint),
        ("rc_buf_optimal_sz", ctypes.c_uint),
        ("rc_2pass_vbr_bias_pct", ctypes.c_uint),
        ("rc_2pass_vbr_minsection_pct", ctypes.c_uint),
        ("rc_2pass_vbr_maxsection_pct", ctypes.c_uint),
        ("rc_2pass_vbr_corpus_complexity", ctypes.c_uint),
        ("kf_mode", ctypes.c_int),
        ("kf_min_dist", ctypes.c_uint),
        ("kf_max_dist", ctypes.c_uint),
        ("ss_number_layers", ctypes.c_uint),
        ("ss_enable_auto_alt_ref", ctypes.c_int * _SS_MAX_LAYERS),
        ("ss_target_bitrate", ctypes.c_uint * _SS_MAX_LAYERS),
        ("ts_number_layers", ctypes.c_uint),
        ("ts_target_bitrate", ctypes.c_uint * _TS_MAX_LAYERS),
        ("ts_rate_decimator", ctypes.c_uint * _TS_MAX_LAYERS),
        ("ts_periodicity", ctypes.c_uint),
        ("ts_layer_id", ctypes.c_uint * _TS_MAX_PERIODICITY),
        ("layer_target_bitrate", ctypes.c_uint * _MAX_LAYERS),
        ("temporal_layering_mode", ctypes.c_int),
        ("use_vizier_rc_params", ctypes.c_int),
        ("vizier_factors", _Rational * 15),
    ]


class _CodecCtx(ctypes.Structure):
    """``vpx_codec_ctx_t``."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("iface", ctypes.c_void_p),
        ("err", ctypes.c_int),
        ("err_detail", ctypes.c_char_p),
        ("init_flags", ctypes.c_long),
        ("config", ctypes.c_void_p),
        ("priv", ctypes.c_void_p),
    ]


class _Image(ctypes.Structure):
    """``vpx_image_t``."""

    _fields_ = [
        ("fmt", ctypes.c_int),
        ("cs", ctypes.c_int),
        ("range", ctypes.c_int),
        ("w", ctypes.c_uint),
        ("h", ctypes.c_uint),
        ("bit_depth", ctypes.c_uint),
        ("d_w", ctypes.c_uint),
        ("d_h", ctypes.c_uint),
        ("r_w", ctypes.c_uint),
        ("r_h", ctypes.c_uint),
        ("x_chroma_shift", ctypes.c_uint),
        ("y_chroma_shift", ctypes.c_uint),
        ("planes", ctypes.c_void_p * 4),
        ("stride", ctypes.c_int * 4),
        ("bps", ctypes.c_int),
        ("user_priv", ctypes.c_void_p),
        ("img_data", ctypes.c_void_p),
        ("img_data_owner", ctypes.c_int),
        ("self_allocd", ctypes.c_int),
        ("fb_priv", ctypes.c_void_p),
    ]


class _FramePkt(ctypes.Structure):
    """The ``frame`` member of ``vpx_codec_cx_pkt_t`` (after its ``kind``)."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("buf", ctypes.c_void_p),
        ("sz", ctypes.c_size_t),
        ("pts", ctypes.c_int64),
        ("duration", ctypes.c_ulong),
        ("flags", ctypes.c_uint32),
        ("partition_id", ctypes.c_int),
    ]


class EncoderError(RuntimeError):
    """libvpx refused a call; the message carries its reason."""


def _library_path() -> Path:
    # The PyAV wheel bundles libvpx next to its package (auditwheel layout).
    site = Path(av.__file__).resolve().parent.parent
    for folder in (site / "av.libs", site / "av" / ".libs", site / "av"):
        found = sorted(folder.glob("libvpx*.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    system = ctypes.util.find_library("vpx")
    if system is None:
        raise EncoderError("no libvpx shared library found")
    return Path(system)


class _Libvpx:
    """The few libvpx entry points the encoder needs, typed for ctypes."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        lib.vpx_codec_version_str.restype = ctypes.c_char_p
        version = lib.vpx_codec_version_str().decode()
        if not version.startswith("v1.16."):
            raise EncoderError(f"libvpx {version} at {path}: only 1.16 is supported")
        self.version = version

        lib.vpx_codec_vp8_cx.restype = ctypes.c_void_p
        lib.vpx_codec_enc_config_default.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(_EncCfg),
            ctypes.c_uint,
        ]
        lib.vpx_codec_enc_init_ver.argtypes = [
            ctypes.POINTER(_CodecCtx),
            ctypes.c_void_p,
            ctypes.POINTER(_EncCfg),
            ctypes.c_long,
            ctypes.c_int,
        ]
        lib.vpx_codec_enc_config_set.argtypes = [
            ctypes.POINTER(_CodecCtx),
            ctypes.POINTER(_EncCfg),
        ]
        lib.vpx_codec_encode.argtypes = [
            ctypes.POINTER(_CodecCtx),
            ctypes.POINTER(_Image),
            ctypes.c_int64,
            ctypes.c_ulong,
            ctypes.c_long,
            ctypes.c_ulong,
        ]
        lib.vpx_codec_get_cx_data.argtypes = [
            ctypes.POINTER(_CodecCtx),
            ctypes.POINTER(ctypes.c_void_p),
        ]
        lib.vpx_codec_get_cx_data.restype = ctypes.POINTER(_FramePkt)
        lib.vpx_img_wrap.argtypes = [
            ctypes.POINTER(_Image),
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
        ]
        lib.vpx_img_wrap.restype = ctypes.POINTER(_Image)
        lib.vpx_codec_destroy.argtypes = [ctypes.POINTER(_CodecCtx)]
        lib.vpx_codec_error_detail.argtypes = [ctypes.POINTER(_CodecCtx)]
        lib.vpx_codec_error_detail.restype = ctypes.c_char_p
        lib.vpx_codec_err_to_string.restype = ctypes.c_char_p
        self.lib = lib

    def check(self, result: int, what: str, ctx: _CodecCtx | None = None) -> None:
        if result == _VPX_CODEC_OK:
            return
        reason = self.lib.vpx_codec_err_to_string(result).decode()
        detail = self.lib.vpx_codec_error_detail(ctx) if ctx is not None else None
        if detail:
            reason += f" ({detail.decode()})"
        raise EncoderError(f"{what}: {reason}")


_libvpx: _Libvpx | None = None
_libvpx_lock = threading.Lock()


def _load() -> _Libvpx:
    global _libvpx
    with _libvpx_lock:
        if _libvpx is None:
            _libvpx = _Libvpx(_library_path())
            logger.debug("using libvpx %s", _libvpx.version)
        return _libvpx


def _threads_for(pixels: int) -> int:
    cpus = multiprocessing.cpu_count()
    if pixels > 1280 * 720 and cpus >= 4:
        return 4
    if pixels > 640 * 480 and cpus >= 3:
        return 2
    return 1


class RateControlledVp8:
    """A libvpx VP8 CBR encoder whose target can change without a keyframe."""

    def __init__(self, width: int, height: int, bitrate: int) -> None:
        if width % 2 or height % 2:
            # Known limit: odd frame sizes are not supported (I420 plane layout).
            raise EncoderError(f"odd frame size {width}x{height}")
        self._vpx = _load()
        self.width = width
        self.height = height
        self._ctx = _CodecCtx()
        self._cfg = _EncCfg()
        self._image = _Image()
        lib = self._vpx.lib

        iface = lib.vpx_codec_vp8_cx()
        self._vpx.check(
            lib.vpx_codec_enc_config_default(iface, ctypes.byref(self._cfg), 0),
            "vpx_codec_enc_config_default",
        )
        cfg = self._cfg
        cfg.g_w = width
        cfg.g_h = height
        cfg.g_threads = _threads_for(width * height)
        cfg.g_timebase = _Rational(1, 90000)
        cfg.g_pass = _VPX_RC_ONE_PASS
        cfg.g_lag_in_frames = 0
        cfg.g_error_resilient = 0
        cfg.rc_dropframe_thresh = 30
        cfg.rc_resize_allowed = 0
        cfg.rc_end_usage = _VPX_CBR
        cfg.rc_target_bitrate = _kbps(bitrate)
        cfg.rc_min_quantizer = 2
        cfg.rc_max_quantizer = 63
        cfg.rc_undershoot_pct = 100
        cfg.rc_overshoot_pct = 15
        cfg.rc_buf_initial_sz = 500
        cfg.rc_buf_optimal_sz = 600
        cfg.rc_buf_sz = 1000
        cfg.kf_mode = _VPX_KF_AUTO
        cfg.kf_min_dist = 0
        cfg.kf_max_dist = 3000
        self._vpx.check(
            lib.vpx_codec_enc_init_ver(
                ctypes.byref(self._ctx),
                iface,
                ctypes.byref(cfg),
                0,
                _ENCODER_ABI_VERSION,
            ),
            "vpx_codec_enc_init",
        )
        self._open = True

        for control, value in (
            (_VP8E_SET_CPUUSED, -6),
            (_VP8E_SET_NOISE_SENSITIVITY, 0),
            (_VP8E_SET_STATIC_THRESHOLD, 1),
            (_VP8E_SET_TOKEN_PARTITIONS, 0),
            # Keeps a keyframe within about three frames' budget at 30 fps.
            (_VP8E_SET_MAX_INTRA_BITRATE_PCT, 900),
        ):
            self._vpx.check(
                lib.vpx_codec_control_(
                    ctypes.byref(self._ctx), ctypes.c_int(control), ctypes.c_int(value)
                ),
                f"vpx_codec_control({control})",
                self._ctx,
            )

    @property
    def bitrate(self) -> int:
        """Target in bits per second that libvpx is running with."""
        return int(self._cfg.rc_target_bitrate) * 1000

    def set_bitrate(self, bitrate: int) -> None:
        """Retarget the running rate control; the next frame is not a keyframe."""
        kbps = _kbps(bitrate)
        if kbps == self._cfg.rc_target_bitrate:
            return
        self._cfg.rc_target_bitrate = kbps
        self._vpx.check(
            self._vpx.lib.vpx_codec_enc_config_set(
                ctypes.byref(self._ctx), ctypes.byref(self._cfg)
            ),
            "vpx_codec_enc_config_set",
            self._ctx,
        )

    def encode(
        self, i420: np.ndarray[Any, Any], pts: int, duration: int, keyframe: bool
    ) -> list[tuple[bytes, bool]]:
        """Encode one I420 picture (shape ``(h * 3 // 2, w)``, uint8).

        Args:
            pts: presentation time in 1/90000 s.
            duration: time until the next frame in 1/90000 s; libvpx's rate
                control spends bits per second of these durations.

        Returns the VP8 frames produced, each with its keyframe flag.
        """
        if not self._open:
            raise EncoderError("encoder is closed")
        picture = np.ascontiguousarray(i420, dtype=np.uint8)
        if picture.shape != (self.height * 3 // 2, self.width):
            raise EncoderError(f"picture shape {picture.shape} is not I420 of size")
        lib = self._vpx.lib
        lib.vpx_img_wrap(
            ctypes.byref(self._image),
            _VPX_IMG_FMT_I420,
            self.width,
            self.height,
            1,
            picture.ctypes.data,
        )
        flags = _VPX_EFLAG_FORCE_KF if keyframe else 0
        self._vpx.check(
            lib.vpx_codec_encode(
                ctypes.byref(self._ctx),
                ctypes.byref(self._image),
                pts,
                max(1, duration),
                flags,
                _VPX_DL_REALTIME,
            ),
            "vpx_codec_encode",
            self._ctx,
        )

        frames: list[tuple[bytes, bool]] = []
        cursor = ctypes.c_void_p(None)
        while True:
            packet = lib.vpx_codec_get_cx_data(
                ctypes.byref(self._ctx), ctypes.byref(cursor)
            )
            if not packet:
                break
            pkt = packet.contents
            if pkt.kind == _VPX_CODEC_CX_FRAME_PKT:
                data = ctypes.string_at(pkt.buf, pkt.sz)
                frames.append((data, bool(pkt.flags & _VPX_FRAME_IS_KEY)))
        return frames

    def close(self) -> None:
        """Free the libvpx context."""
        if self._open:
            self._open = False
            self._vpx.lib.vpx_codec_destroy(ctypes.byref(self._ctx))

    def __del__(self) -> None:
        if getattr(self, "_open", False):
            self.close()


def _kbps(bitrate: int) -> int:
    return max(MIN_BITRATE, min(bitrate, MAX_BITRATE)) // 1000


class AdaptiveVp8Encoder(Vp8Encoder):
    """aiortc VP8 encoder whose rate follows the tier and the receiver's estimate.

    The effective target is the smaller of ``max_bitrate`` (the tier's cap,
    as the browser sets ``maxBitrate`` on its sender) and ``target_bitrate``
    (what aiortc's sender writes on each REMB). Both may change at any time,
    from any thread; the next encoded frame uses the new target, and no
    keyframe is sent for it. Packetization is aiortc's own.
    """

    def __init__(self, max_bitrate: int = DEFAULT_MAX_BITRATE) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._max_bitrate = max_bitrate
        self._estimate: int | None = None
        self._vp8: RateControlledVp8 | None = None
        self._last_pts: int | None = None
        self._frame_duration = 90000 // 30
        self.keyframes = 0
        self.frames = 0

    @property
    def max_bitrate(self) -> int:
        """The tier's cap in bits per second."""
        return self._max_bitrate

    @max_bitrate.setter
    def max_bitrate(self, bitrate: int) -> None:
        with self._lock:
            self._max_bitrate = bitrate

    @property
    def target_bitrate(self) -> int:
        """The bitrate frames are encoded at now (aiortc reads and writes this)."""
        with self._lock:
            if self._estimate is None:
                return self._max_bitrate
            return min(self._max_bitrate, self._estimate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        # aiortc's sender calls this with every REMB from the receiver.
        with self._lock:
            self._estimate = bitrate

    def apply_tier(self, tier: TierVideo) -> None:
        """Cap the rate as a tier asks (its fps belongs to the video source)."""
        self.max_bitrate = tier.max_bitrate

    def encode(
        self, frame: Frame, force_keyframe: bool = False
    ) -> tuple[list[bytes], int]:
        """Encode one video frame into RTP payloads and their 90 kHz timestamp."""
        if not isinstance(frame, av.VideoFrame):
            raise EncoderError(f"cannot encode {type(frame).__name__} as VP8")
        if frame.pts is None or frame.time_base is None:
            raise EncoderError("video frame without pts or time_base")
        timestamp = convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)
        data = b"".join(
            chunk for chunk, _ in self.encode_frame(frame, force_keyframe, timestamp)
        )
        payloads = self._packetize(data, self.picture_id) if data else []
        self.picture_id = (self.picture_id + 1) % (1 << 15)
        return payloads, timestamp

    def encode_frame(
        self, frame: av.VideoFrame, force_keyframe: bool, timestamp: int
    ) -> list[tuple[bytes, bool]]:
        """Encode into raw VP8 frames with keyframe flags (no RTP framing)."""
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")

        vp8 = self._vp8
        if vp8 is not None and (vp8.width, vp8.height) != (frame.width, frame.height):
            logger.info(
                "video size changed to %dx%d, restarting encoder",
                frame.width,
                frame.height,
            )
            vp8.close()
            vp8 = None
        bitrate = self.target_bitrate
        if vp8 is None:
            vp8 = RateControlledVp8(frame.width, frame.height, bitrate)
            self._vp8 = vp8
            self._last_pts = None
        elif bitrate // 1000 != vp8.bitrate // 1000:
            logger.debug("video bitrate %d -> %d bps", vp8.bitrate, bitrate)
            vp8.set_bitrate(bitrate)

        # The frame's duration is taken from the spacing of timestamps, so the
        # rate control spends bits per second whatever the frame rate.
        if self._last_pts is not None and 0 < timestamp - self._last_pts < 90000:
            self._frame_duration = timestamp - self._last_pts
        self._last_pts = timestamp

        out = vp8.encode(
            frame.to_ndarray(), timestamp, self._frame_duration, force_keyframe
        )
        self.frames += len(out)
        self.keyframes += sum(1 for _, key in out if key)
        return out

    def close(self) -> None:
        """Free the libvpx context (a later frame opens a new one)."""
        if self._vp8 is not None:
            self._vp8.close()
            self._vp8 = None


def install_on_sender(sender: RTCRtpSender, encoder: AdaptiveVp8Encoder) -> None:
    """Make ``sender`` encode its video with ``encoder``.

    Call it before the sender's first frame, and only when the negotiated video
    codec is VP8 (aiortc 1.16.0 creates its own encoder lazily on the first
    frame unless one is already in place).
    """
    slot = "_RTCRtpSender__encoder"
    if not hasattr(sender, slot):
        raise EncoderError("RTCRtpSender has no encoder slot (aiortc is not 1.16.0)")
    if sender.kind != "video":
        raise EncoderError(f"cannot install a video encoder on a {sender.kind} sender")
    setattr(sender, slot, encoder)
