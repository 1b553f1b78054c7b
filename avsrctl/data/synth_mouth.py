"""A rendered talking mouth for the synthetic corpus: visemes -> parameters -> RGB frames.

The mouth is drawn from seven articulatory parameters per frame (below). Each viseme class
sets a target for them; targets are blended over time with a dominance-weighted Gaussian
(lip closure for p/b/m and lip rounding dominate their neighbours, as in real
coarticulation) and sampled at each 25 Hz frame instant. Frames are drawn at twice the
output size with anti-aliased polygons and box-filtered down, then moved by a little head
motion and overlaid with per-frame sensor noise. A speaker's `MouthLook` fixes colours,
proportions, placement and how far the speaker opens the mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsrctl.data.manifest import VIDEO_FPS

# articulatory parameters, each in [0, 1]
PARAMS = ("open", "spread", "round", "teeth", "tongue", "press", "tuck")
OPEN, SPREAD, ROUND, TEETH, TONGUE, PRESS, TUCK = range(len(PARAMS))

# viseme -> (targets in PARAMS order, dominance); silence relaxes to "rest"
VISEMES: dict[str, tuple[tuple[float, ...], float]] = {
    "rest": ((0.02, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0), 0.6),
    "bilabial": ((0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0), 6.0),  # p b m: lips pressed together
    "labiodental": ((0.10, 0.15, 0.0, 1.0, 0.0, 0.0, 1.0), 5.0),  # f v: upper teeth on the lower lip
    "dental": ((0.22, 0.15, 0.0, 0.8, 1.0, 0.0, 0.0), 2.0),  # th: tongue tip between the teeth
    "sibilant": ((0.12, 0.55, 0.0, 1.0, 0.0, 0.0, 0.0), 2.0),  # s z: teeth close, lips spread
    "postalveolar": ((0.20, 0.0, 0.65, 0.8, 0.2, 0.0, 0.0), 2.5),  # sh ch j: lips pushed out
    "alveolar": ((0.25, 0.2, 0.0, 0.5, 0.7, 0.0, 0.0), 1.0),  # t d n
    "lateral": ((0.35, 0.15, 0.0, 0.4, 1.0, 0.0, 0.0), 1.0),  # l: tongue tip up
    "velar": ((0.32, 0.1, 0.0, 0.3, 0.3, 0.0, 0.0), 0.8),  # k g ng
    "glottal": ((0.40, 0.05, 0.0, 0.2, 0.1, 0.0, 0.0), 0.5),  # h
    "rhotic": ((0.22, 0.0, 0.55, 0.3, 0.3, 0.0, 0.0), 1.5),  # r
    "round": ((0.10, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0), 3.0),  # w
    "palatal": ((0.18, 0.6, 0.0, 0.5, 0.5, 0.0, 0.0), 1.0),  # y
    "i": ((0.22, 1.0, 0.0, 0.7, 0.5, 0.0, 0.0), 2.0),
    "I": ((0.32, 0.7, 0.0, 0.5, 0.4, 0.0, 0.0), 2.0),
    "e": ((0.50, 0.6, 0.0, 0.4, 0.3, 0.0, 0.0), 2.0),
    "a": ((0.95, 0.3, 0.0, 0.3, 0.1, 0.0, 0.0), 2.0),
    "V": ((0.62, 0.15, 0.0, 0.3, 0.2, 0.0, 0.0), 2.0),
    "@": ((0.42, 0.1, 0.0, 0.3, 0.3, 0.0, 0.0), 1.2),
    "O": ((0.65, 0.0, 0.7, 0.2, 0.1, 0.0, 0.0), 2.0),
    "U": ((0.30, 0.0, 0.75, 0.1, 0.2, 0.0, 0.0), 2.0),
    "u": ((0.18, 0.0, 1.0, 0.0, 0.1, 0.0, 0.0), 3.0),
}
GRID_S = 0.005  # 5 ms timeline on which targets are blended
SUPERSAMPLE = 2  # draw at 2x, box-filter down: smooth edges at 32-96 px

_SKIN = np.array([(236, 196, 168), (224, 172, 138), (198, 142, 108), (164, 112, 80), (124, 82, 56), (92, 60, 44)],
                 dtype=np.float32)


@dataclass(frozen=True)
class MouthLook:
    """How one speaker's mouth region looks and moves (fractions are of the ROI side)."""

    skin: tuple[float, float, float]
    lip: tuple[float, float, float]
    cavity: tuple[float, float, float]
    teeth: tuple[float, float, float]
    tongue: tuple[float, float, float]
    center: tuple[float, float]  # mouth centre (x, y)
    half_width: float  # half the lip width at rest
    lip_upper: float  # upper lip thickness / half width
    lip_lower: float
    expressiveness: float  # how far the jaw opens (1 = the viseme targets)
    coarticulation_s: float  # Gaussian width of the target blending
    light_angle: float  # radians; direction of the lighting gradient
    light_strength: float
    stubble: float  # 0 none .. 1 dark beard shadow
    angle_deg: float  # head roll
    scale: float
    jitter: float  # head motion amplitude in output pixels at 96 px
    noise: float  # per-frame sensor noise (std, 8-bit levels)


def random_look(rng: np.random.Generator) -> MouthLook:
    tone = rng.uniform(0.0, 1.0) * (len(_SKIN) - 1)
    k = min(int(tone), len(_SKIN) - 2)
    skin = _SKIN[k] + (tone - k) * (_SKIN[k + 1] - _SKIN[k]) + rng.uniform(-8, 8, 3)
    lip = skin * rng.uniform(0.68, 0.86) * np.array([1.0, 0.72, 0.76]) + np.array([22, 0, 6]) * rng.uniform(0.3, 1.0)
    cavity = np.array([70, 22, 28]) * rng.uniform(0.6, 1.1)
    teeth = np.array([238, 232, 214]) * rng.uniform(0.82, 1.0)
    tongue = np.array([196, 96, 100]) * rng.uniform(0.75, 1.0)
    rnd = lambda c: tuple(float(v) for v in np.clip(c, 0, 255))  # noqa: E731
    return MouthLook(
        skin=rnd(skin), lip=rnd(lip), cavity=rnd(cavity), teeth=rnd(teeth), tongue=rnd(tongue),
        center=(float(rng.uniform(0.45, 0.55)), float(rng.uniform(0.52, 0.60))),
        half_width=float(rng.uniform(0.24, 0.31)), lip_upper=float(rng.uniform(0.15, 0.23)),
        lip_lower=float(rng.uniform(0.21, 0.31)), expressiveness=float(rng.uniform(0.75, 1.15)),
        coarticulation_s=float(rng.uniform(0.016, 0.030)), light_angle=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0.05, 0.22)), stubble=float(rng.uniform(0.2, 0.8) if rng.random() < 0.3 else 0.0),
        angle_deg=float(rng.uniform(-6, 6)), scale=float(rng.uniform(0.9, 1.1)),
        jitter=float(rng.uniform(0.5, 2.5)), noise=float(rng.uniform(1.5, 5.0)),
    )


def mouth_track(visemes, n_frames: int, look: MouthLook, rng: np.random.Generator) -> np.ndarray:
    """(viseme, start, end) segments -> (T, len(PARAMS)) parameters at each frame instant."""
    n_grid = int(np.ceil(n_frames / VIDEO_FPS / GRID_S)) + 1
    rest, rest_w = VISEMES["rest"]
    target = np.tile(np.asarray(rest, np.float32), (n_grid, 1))  # (G, P)
    weight = np.full(n_grid, rest_w, np.float32)  # (G,)
    for name, start, end in visemes:
        values, dom = VISEMES[name]
        a, b = int(round(start / GRID_S)), max(int(round(end / GRID_S)), int(round(start / GRID_S)) + 1)
        target[a:b] = values
        weight[a:b] = dom
    # dominance-weighted Gaussian blending: a closure wins over its neighbouring vowels
    half = int(np.ceil(3 * look.coarticulation_s / GRID_S))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * GRID_S / look.coarticulation_s) ** 2)
    num = np.stack([np.convolve(target[:, p] * weight, kernel, mode="same") for p in range(len(PARAMS))], 1)
    den = np.convolve(weight, kernel, mode="same")[:, None]
    smooth = num / den  # (G, P)
    centres = (np.arange(n_frames) + 0.5) / VIDEO_FPS
    track = smooth[np.minimum(np.round(centres / GRID_S).astype(int), n_grid - 1)].copy()  # (T, P)
    track[:, OPEN] = track[:, OPEN] * look.expressiveness + rng.normal(0, 0.015, n_frames)
    return np.clip(track, 0.0, 1.0).astype(np.float32)


def _smooth_walk(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    steps = rng.normal(0.0, 1.0, n + 8)
    walk = np.convolve(steps, np.ones(8) / 8, mode="valid")[:n]
    walk = np.cumsum(walk) * 0.3
    walk -= np.linspace(walk[0], walk[-1], n) if n > 1 else walk
    scale = np.abs(walk).max()
    return walk * (amplitude / scale) if scale > 0 else walk


class MouthRenderer:
    """Draws frames of one speaker at `size` x `size` (RGB uint8)."""

    def __init__(self, look: MouthLook, size: int):
        import cv2  # drawing only; keeps cv2 out of modules that merely import this one

        cv2.setNumThreads(1)  # small images: parallelism comes from worker processes, not cv2 threads

        self.cv2, self.look, self.size = cv2, look, size
        self.R = size * SUPERSAMPLE
        self.cx, self.cy = look.center[0] * self.R, look.center[1] * self.R
        self.W0 = look.half_width * self.R
        self.jaw_room = int(0.7 * self.W0) + 2
        self.background = self._background()

    # ------------------------------------------------------------------ static face
    def _background(self) -> np.ndarray:
        cv2, R, look = self.cv2, self.R, self.look
        H = R + self.jaw_room  # extra rows on top: frame row y is background row y + jaw_room
        yy, xx = np.mgrid[-self.jaw_room:R, 0:R].astype(np.float32) / R - 0.5
        light = 1.0 + look.light_strength * (xx * np.cos(look.light_angle) + yy * np.sin(look.light_angle)) * 2
        img = np.asarray(look.skin, np.float32)[None, None, :] * light[..., None]
        cx, cy, W0 = self.cx, self.cy + self.jaw_room, self.W0
        shade = np.ones((H, R), np.float32)
        for sx in (-1, 1):  # nostrils and the nose's underside at the top edge
            cv2.ellipse(shade, (int(cx + sx * 0.5 * W0), int(cy - 1.75 * W0)), (int(0.22 * W0), int(0.11 * W0)),
                        sx * 15, 0, 360, 0.45, -1, cv2.LINE_AA)
            cv2.line(shade, (int(cx + sx * 0.16 * W0), int(cy - 1.6 * W0)), (int(cx + sx * 0.2 * W0), int(cy - 0.7 * W0)),
                     0.9, max(1, int(0.06 * W0)), cv2.LINE_AA)  # philtrum ridges
        cv2.ellipse(shade, (int(cx), int(cy + 1.15 * W0)), (int(0.55 * W0), int(0.25 * W0)), 0, 200, 340, 0.8,
                    max(1, int(0.08 * W0)), cv2.LINE_AA)  # crease between lower lip and chin
        shade = cv2.GaussianBlur(shade, (0, 0), max(0.8, 0.05 * W0))
        chin = 1.0 - 0.12 * np.clip((yy + 0.5 - (self.cy + 1.6 * W0) / R) * 4, 0, 1)
        img *= (shade * chin)[..., None]
        rng = np.random.default_rng(int(sum(look.skin) * 1000) % 2**32)  # fixed skin texture per look
        tex = cv2.GaussianBlur(rng.normal(0, 1, (H, R)).astype(np.float32), (0, 0), 1.5) * 6
        img += tex[..., None]
        if look.stubble > 0:
            dots = (rng.random((H, R)) < 0.25 * look.stubble).astype(np.float32)
            mask = ((yy + 0.5) * R > self.cy - 1.2 * W0).astype(np.float32)
            img *= (1.0 - 0.35 * cv2.GaussianBlur(dots * mask, (0, 0), 0.7))[..., None]
        return np.clip(img, 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------ one frame
    def _poly(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return np.round(np.stack([xs, ys], 1) * 16).astype(np.int32)  # 4 fractional bits (shift=4)

    def _fill(self, img, pts, color) -> None:
        self.cv2.fillPoly(img, [pts], color, self.cv2.LINE_AA, 4)

    def draw(self, p: np.ndarray) -> np.ndarray:
        """One frame at the supersampled size (R, R, 3) from parameters p (len(PARAMS),)."""
        cv2, look, W0, cx = self.cv2, self.look, self.W0, self.cx
        o, s, r, th, tg, pr, tk = (float(v) for v in p)
        oh = min(o, 1.0) * 0.7 * W0  # opening height
        jaw = int(round(0.62 * oh))
        cy = self.cy
        # the jaw carries the chin: rows below the mouth come from higher up in the background
        img = self.background[self.jaw_room:self.jaw_room + self.R].copy()
        top = int(cy)
        img[top:] = self.background[self.jaw_room + top - jaw:self.jaw_room + self.R - jaw]
        hw = W0 * (1 + 0.16 * s - 0.30 * r - 0.05 * o)
        iw = hw * (0.88 - 0.38 * r)
        thick = (1 - 0.3 * pr) * (1 + 0.35 * r)  # pressed lips thin, rounded lips pout
        tu, tl = look.lip_upper * W0 * thick, look.lip_lower * W0 * thick * (1 - 0.4 * tk)
        q = 0.85 - 0.4 * r
        t = np.linspace(-1, 1, 33)
        xi = np.clip(hw * t / iw, -1, 1)
        f_out = np.where(np.abs(hw * t) < iw, (1 - xi**2) ** q, 0.0)
        up_seam, lo_seam = cy - 0.38 * oh * f_out, cy + 0.62 * oh * f_out - tk * 0.15 * tl
        bow = tu * 0.22 * np.exp(-((t / 0.13) ** 2))
        up_out = up_seam - tu * (1 - t**2) ** 0.55 + bow
        lo_out = lo_seam + tl * (1 - t**2) ** 0.6
        xs = cx + hw * t
        lip = np.asarray(look.lip)
        self._fill(img, self._poly(np.r_[xs, xs[::-1]], np.r_[lo_out, lo_seam[::-1]]), tuple(lip))
        self._fill(img, self._poly(np.r_[xs, xs[::-1]], np.r_[up_out, up_seam[::-1]]), tuple(lip * 0.88))
        cv2.ellipse(img, (int(cx), int(lo_seam[16] + 0.5 * tl)), (max(1, int(0.25 * hw)), max(1, int(0.12 * tl))),
                    0, 0, 360, tuple(np.clip(lip * 1.07, 0, 255)), -1, cv2.LINE_AA)  # lower-lip highlight
        if oh > 0.6:
            self._cavity(img, cx, cy, iw, oh, q, th, tg, s)
        seam_w = max(1, int(round(0.025 * W0 * (1 + pr))))
        mid = np.where(oh > 0.6, up_seam, (up_seam + lo_seam) / 2)
        cv2.polylines(img, [self._poly(xs, mid)], False, tuple(lip * 0.45), seam_w, cv2.LINE_AA, 4)
        if tk > 0.3:  # f/v: the upper incisors rest on the lower lip
            w, h = 0.45 * iw, tk * 0.12 * W0
            cv2.rectangle(img, (int(cx - w), int(cy - h * 0.3)), (int(cx + w), int(cy + h)), look.teeth, -1, cv2.LINE_AA)
        return img

    def _cavity(self, img, cx, cy, iw, oh, q, th, tg, s) -> None:
        cv2, look = self.cv2, self.look
        t = np.linspace(-1, 1, 33)
        f = (1 - t**2) ** q
        xs = cx + iw * t
        up, lo = cy - 0.38 * oh * f, cy + 0.62 * oh * f
        x0, x1 = int(xs[0]) - 2, int(xs[-1]) + 3
        y0, y1 = int(up.min()) - 2, int(lo.max()) + 3
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.R), min(y1, self.R)
        if x1 <= x0 or y1 <= y0:
            return
        layer = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        layer[:] = np.asarray(look.cavity, np.uint8)
        sx, sy = cx - x0, cy - y0
        cv2.ellipse(layer, (int(sx), int(sy + 0.62 * oh * (1 - 0.45 * tg))), (max(1, int(0.6 * iw)), max(1, int(0.35 * oh))),
                    0, 0, 360, look.tongue, -1, cv2.LINE_AA)
        teeth_h = th * (0.10 * self.W0 + 0.25 * oh)
        if teeth_h >= 0.5:
            cv2.rectangle(layer, (int(sx - 0.8 * iw), int(sy - 0.38 * oh - 2)), (int(sx + 0.8 * iw), int(sy - 0.38 * oh + teeth_h)),
                          look.teeth, -1, cv2.LINE_AA)
            cv2.line(layer, (int(sx), int(sy - 0.38 * oh)), (int(sx), int(sy - 0.38 * oh + teeth_h)),
                     tuple(np.asarray(look.teeth) * 0.8), 1, cv2.LINE_AA)
        low_h = th * max(s - 0.2, 0) * 0.25 * oh
        if low_h >= 0.5:
            cv2.rectangle(layer, (int(sx - 0.6 * iw), int(sy + 0.62 * oh - low_h)), (int(sx + 0.6 * iw), int(sy + 0.62 * oh + 2)),
                          look.teeth, -1, cv2.LINE_AA)
        mask = np.zeros(layer.shape[:2], np.uint8)
        self._fill(mask, self._poly(np.r_[xs, xs[::-1]] - x0, np.r_[up, lo[::-1]] - y0), 255)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        region = img[y0:y1, x0:x1]
        region[:] = (layer * alpha + region * (1 - alpha)).astype(np.uint8)

    # ------------------------------------------------------------------ a clip
    def render(self, track: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T, P) parameters -> (T, size, size, 3) uint8 frames with head motion and noise."""
        cv2, look, n, size = self.cv2, self.look, len(track), self.size
        amp = look.jitter * size / 96
        dx, dy = _smooth_walk(rng, n, amp), _smooth_walk(rng, n, amp)
        roll = look.angle_deg + _smooth_walk(rng, n, 1.0)
        zoom = look.scale * (1 + _smooth_walk(rng, n, 0.015))
        gain = (1 + rng.normal(0, 0.015, n)).astype(np.float32)
        nod = 0.04 * self.W0 / SUPERSAMPLE * track[:, OPEN]  # the head nods a little as the jaw opens
        frames = np.empty((n, size, size, 3), np.float32)
        centre = (size / 2, size / 2)
        for k in range(n):
            # box-filter down first, then move the head at the output size (4x fewer pixels to warp)
            small = cv2.resize(self.draw(track[k]), (size, size), interpolation=cv2.INTER_AREA)
            m = cv2.getRotationMatrix2D(centre, float(roll[k]), float(zoom[k]))
            m[:, 2] += (dx[k], dy[k] + nod[k])
            frames[k] = cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frames *= gain[:, None, None, None]
        # triangular noise from random bytes (sum of two uniforms, std 1/sqrt(6)): ~5x cheaper than
        # Gaussian draws, and sensor noise needs no exact shape
        u = np.frombuffer(rng.bytes(2 * frames.size), np.uint8).reshape(2, *frames.shape)
        frames += (u[0].astype(np.float32) + u[1] - 255.0) * np.float32(look.noise * np.sqrt(6) / 255)
        return np.clip(np.rint(frames), 0, 255).astype(np.uint8)
