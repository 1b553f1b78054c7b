"""A rendered lower face for the synthetic corpus: mouth parameters -> RGB frames framed like a real ROI.

A real mouth crop (48-96 px, cut around the mouth from a face track) shows the lower half of
the nose with its nostrils, the philtrum, full lips with volume and shading, the cheeks and
nasolabial folds, and the chin moving with the jaw, under side lighting, with stubble on some
speakers and camera blur and compression on all. We draw exactly that: a height field for the
face (cylindrical cheeks, nose tip and wings, philtrum, folds, lips, the groove under the lower
lip, the chin) lit with a Lambertian + specular model, an albedo with skin texture, spots and
stubble, the mouth opening with teeth and tongue, a jaw line that moves down as the mouth opens,
then head motion, blur, sensor noise and JPEG compression at the output size. A speaker's
`FaceLook` fixes the anatomy, colours, light and camera; `mouth_track` (mouth.py) gives
the per-frame articulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsrctl.data.mouth_params import OPEN
from avsrctl.synth.mouth import smooth_walk

SUPERSAMPLE = 2  # draw at 2x, box-filter down: smooth edges at 32-96 px
# skin tones, light to dark (RGB under white light)
_SKIN = np.array(
    [(232, 190, 164), (220, 170, 138), (200, 146, 112), (168, 116, 84), (128, 86, 60), (94, 62, 46)], dtype=np.float32
)
# colour casts of studio and office light (multipliers per channel)
_CASTS = np.array(
    [(1.0, 1.0, 1.0), (1.08, 1.0, 0.82), (1.15, 0.98, 0.72), (0.96, 1.0, 1.06), (1.04, 1.02, 0.9)], dtype=np.float32
)


@dataclass(frozen=True)
class FaceLook:
    """How one speaker's lower face looks and moves; lengths are fractions of the ROI side."""

    skin: tuple[float, float, float]
    cast: tuple[float, float, float]  # colour of the light
    lip: tuple[float, float, float]
    cavity: tuple[float, float, float]
    teeth: tuple[float, float, float]
    tongue: tuple[float, float, float]
    outside: tuple[float, float, float]  # neck shadow or background beyond the jaw line
    mouth: tuple[float, float]  # mouth centre (x, y)
    half_width: float  # half the lip width at rest
    lip_upper: float  # upper lip thickness / half width
    lip_lower: float
    nose_y: float  # height of the nostrils
    nose_width: float  # half width of the nose wings
    face_width: float  # half width of the face at mouth height (> 0.5: the cheeks fill the crop)
    chin_y: float  # centre of the chin
    light: tuple[float, float]  # azimuth in the image plane, elevation (radians)
    ambient: float
    shine: float  # specular strength (nose tip, moist lower lip)
    stubble: float  # 0 none .. 1 dark beard shadow
    spots: int  # moles and blemishes
    expressiveness: float  # how far the jaw opens (1 = the viseme targets)
    coarticulation_s: float  # Gaussian width of the target blending
    angle_deg: float  # head roll
    scale: float
    jitter: float  # head motion amplitude in output pixels at 96 px
    blur: float  # camera blur (Gaussian sigma in output pixels at 48 px)
    jpeg: int  # JPEG quality of each frame (compression artefacts)
    noise: float  # per-frame sensor noise (std, 8-bit levels)
    texture_seed: int


def _rgb(c) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(c, 0, 255))


def random_look(rng: np.random.Generator) -> FaceLook:
    tone = rng.uniform(0.0, 1.0) ** 1.3 * (len(_SKIN) - 1)  # lighter tones a little more often
    k = min(int(tone), len(_SKIN) - 2)
    skin = _SKIN[k] + (tone - k) * (_SKIN[k + 1] - _SKIN[k]) + rng.uniform(-10, 10, 3)
    cast = _CASTS[rng.integers(len(_CASTS))] * rng.uniform(0.97, 1.03, 3)
    # lips: the skin darkened and pulled towards red, from barely-there to clearly pink
    redness = rng.uniform(0.4, 0.95)
    lip = skin * rng.uniform(0.72, 0.92) * (1 - redness * np.array([0.0, 0.32, 0.26])) + redness * np.array([18, 0, 4])
    outside = skin * rng.uniform(0.35, 0.6) if rng.random() < 0.6 else rng.uniform(20, 160, 3)
    mx, my = rng.uniform(0.46, 0.54), rng.uniform(0.55, 0.64)
    hw = rng.uniform(0.19, 0.25)
    return FaceLook(
        skin=_rgb(skin),
        cast=tuple(float(c) for c in cast),
        lip=_rgb(lip),
        cavity=_rgb(np.array([60, 22, 26]) * rng.uniform(0.5, 1.1)),
        teeth=_rgb(np.array([226, 218, 190]) * rng.uniform(0.7, 1.0)),
        tongue=_rgb(np.array([180, 92, 96]) * rng.uniform(0.7, 1.0)),
        outside=_rgb(outside),
        mouth=(float(mx), float(my)),
        half_width=float(hw),
        lip_upper=float(rng.uniform(0.2, 0.34)),
        lip_lower=float(rng.uniform(0.28, 0.44)),
        nose_y=float(my - rng.uniform(0.30, 0.40)),
        nose_width=float(rng.uniform(0.11, 0.16)),
        face_width=float(rng.uniform(0.48, 0.72)),
        chin_y=float(my + rng.uniform(0.27, 0.36)),
        light=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(1.0, 1.4))),
        ambient=float(rng.uniform(0.35, 0.6)),
        shine=float(rng.uniform(0.05, 0.3)),
        stubble=float(rng.uniform(0.2, 1.0) if rng.random() < 0.4 else 0.0),
        spots=int(rng.integers(0, 6)),
        expressiveness=float(rng.uniform(0.7, 1.15)),
        coarticulation_s=float(rng.uniform(0.016, 0.030)),
        angle_deg=float(rng.uniform(-7, 7)),
        scale=float(rng.uniform(0.88, 1.12)),
        jitter=float(rng.uniform(0.5, 3.0)),
        blur=float(rng.uniform(0.2, 0.7)),
        jpeg=int(rng.integers(50, 90)),
        noise=float(rng.uniform(1.0, 4.0)),
        texture_seed=int(rng.integers(2**31)),
    )


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


class FaceRenderer:
    """Draws frames of one speaker at `size` x `size` (RGB uint8)."""

    def __init__(self, look: FaceLook, size: int):
        import cv2  # drawing only; keeps cv2 out of modules that merely import this one

        cv2.setNumThreads(1)  # small images: parallelism comes from worker processes, not cv2 threads
        self.cv2, self.look, self.size = cv2, look, size
        self.R = R = size * SUPERSAMPLE
        self.px = 1.0 / R  # one drawing pixel as a fraction of the side
        y, x = (np.mgrid[0:R, 0:R].astype(np.float32) + 0.5) / R
        self.x, self.y = x, y
        self._static_face()

    # ------------------------------------------------------------------ what does not move with the jaw
    def _static_face(self) -> None:
        cv2, lk, x, y = self.cv2, self.look, self.x, self.y
        mx, my = lk.mouth
        rng = np.random.default_rng(lk.texture_seed)
        # height: a cylinder across the cheeks, the nose tip and wings, the philtrum ridges
        cyl = np.sqrt(np.clip(1 - ((x - mx) / (lk.face_width * 1.3)) ** 2, 0, 1)) * 0.22
        nose = 0.07 * _gauss(x, y, mx, lk.nose_y - 0.07, 0.075, 0.09) + sum(
            0.025 * _gauss(x, y, mx + s * lk.nose_width, lk.nose_y - 0.005, 0.045, 0.045) for s in (-1, 1)
        )
        under_nose = -0.012 * _gauss(x, y, mx, lk.nose_y + 0.035, 0.06, 0.025)
        philtrum = sum(0.003 * _gauss(x, y, mx + s * 0.028, (lk.nose_y + my) / 2, 0.014, 0.05) for s in (-1, 1))
        folds = np.zeros_like(x)
        for s in (-1, 1):  # nasolabial folds: from the nose wings down past the mouth corners
            t = np.linspace(0, 1, 24)
            fx = mx + s * (lk.nose_width + 0.03 + t * (lk.half_width + 0.02 - lk.nose_width))
            fy = lk.nose_y + 0.02 + t * (my + 0.08 - lk.nose_y)
            pts = np.round(np.stack([fx, fy], 1) * self.R * 16).astype(np.int32)
            cv2.polylines(folds, [pts], False, 1.0, max(1, int(0.02 * self.R)), cv2.LINE_AA, 4)
        folds = -0.006 * cv2.GaussianBlur(folds, (0, 0), 0.025 * self.R)
        self.h_upper = (cyl + nose + under_nose + philtrum + folds).astype(np.float32)
        # height below the mouth, which the jaw carries: the groove under the lower lip, the chin
        self.h_lower = (
            cyl
            + folds
            - 0.012 * _gauss(x, y, mx, my + 0.11, 0.11, 0.03)
            + 0.04 * _gauss(x, y, mx, lk.chin_y, 0.16, 0.1)
        ).astype(np.float32)
        # albedo: skin with blotches and pores, spots, nostrils, stubble
        skin = np.asarray(lk.skin, np.float32)
        blotch = cv2.GaussianBlur(rng.normal(0, 1, x.shape).astype(np.float32), (0, 0), 0.06 * self.R) * 0.6
        pores = cv2.GaussianBlur(rng.normal(0, 1, x.shape).astype(np.float32), (0, 0), 0.6) * 0.04
        tone = 1 + 0.05 * blotch + pores
        for _ in range(lk.spots):
            sx, sy = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95)
            tone *= 1 - rng.uniform(0.1, 0.35) * _gauss(x, y, sx, sy, 0.008, 0.008)
        for s in (-1, 1):  # nostrils: dark ellipses under the nose tip
            tone *= 1 - 0.75 * _gauss(x, y, mx + s * 0.45 * lk.nose_width, lk.nose_y, 0.028, 0.014)
        if lk.stubble > 0:
            # thickest over the upper lip and on the chin, fading in below the nose and out on the cheeks
            beard = np.clip((y - lk.nose_y - 0.04) / 0.16, 0, 1) * (
                0.2 + 0.8 * np.exp(-0.5 * ((x - mx) / (0.5 * lk.face_width)) ** 2)
            )
            dots = (rng.random(x.shape) < 0.3).astype(np.float32)
            hair = cv2.GaussianBlur(dots, (0, 0), 0.5) * 0.6 + 0.4
            tone *= 1 - 0.35 * lk.stubble * beard * hair
        self.albedo = skin[None, None, :] * tone[..., None]  # (R, R, 3)
        # the face outline: an ellipse from the cheeks to the chin; beyond it the neck or background
        top = my - 0.1
        ry = lk.chin_y + 0.2 - top
        self.face = np.clip((1 - ((x - mx) / lk.face_width) ** 2 - ((y - top) / ry) ** 2) * 12 + 0.5, 0, 1)
        self.face[y < top] = 1.0

    # ------------------------------------------------------------------ lips from the parameters
    def _lips(self, p: np.ndarray):
        """Outer lip and mouth-opening polygons (in drawing pixels) and the jaw drop (fraction)."""
        lk, R = self.look, self.R
        o, s, r, th, tg, pr, tk = (float(v) for v in p)
        W0 = lk.half_width * R
        cx, cy = lk.mouth[0] * R, lk.mouth[1] * R
        oh = min(o, 1.0) * 0.75 * W0  # opening height
        hw = W0 * (1 + 0.14 * s - 0.28 * r - 0.05 * o)
        iw = hw * (0.86 - 0.36 * r)
        thick = (1 - 0.3 * pr) * (1 + 0.35 * r)  # pressed lips thin, rounded lips pout
        tu, tl = lk.lip_upper * W0 * thick, lk.lip_lower * W0 * thick * (1 - 0.4 * tk)
        q = 0.85 - 0.4 * r
        t = np.linspace(-1, 1, 33)
        xi = np.clip(hw * t / iw, -1, 1)
        f = np.where(np.abs(hw * t) < iw, (1 - xi**2) ** q, 0.0)
        up_seam, lo_seam = cy - 0.35 * oh * f, cy + 0.65 * oh * f - tk * 0.15 * tl
        bow = tu * 0.25 * np.exp(-((t / 0.14) ** 2))  # the Cupid's bow dips at the centre
        up_out = up_seam - tu * (1 - t**2) ** 0.5 + bow
        lo_out = lo_seam + tl * (1 - t**2) ** 0.6
        xs = cx + hw * t
        upper = np.stack([np.r_[xs, xs[::-1]], np.r_[up_out, up_seam[::-1]]], 1)
        lower = np.stack([np.r_[xs, xs[::-1]], np.r_[lo_seam, lo_out[::-1]]], 1)
        inner = np.stack([np.r_[xs, xs[::-1]], np.r_[up_seam, lo_seam[::-1]]], 1) if oh > 0.5 else None
        return upper, lower, inner, 0.7 * oh / R, (cx, cy, iw, oh, th, tg, s, tk, W0)

    def _mask(self, pts: np.ndarray, blur: float) -> np.ndarray:
        m = np.zeros((self.R, self.R), np.float32)
        self.cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 1.0, self.cv2.LINE_AA, 4)
        return self.cv2.GaussianBlur(m, (0, 0), blur) if blur > 0 else m

    def _mouth_inside(self, geo) -> np.ndarray:
        """(R, R, 3) colour inside the opening: dark cavity, tongue low, upper teeth, some lower teeth."""
        cv2, lk = self.cv2, self.look
        cx, cy, iw, oh, th, tg, s, tk, W0 = geo
        layer = np.empty((self.R, self.R, 3), np.float32)
        layer[:] = lk.cavity
        cv2.ellipse(
            layer,
            (int(cx), int(cy + 0.65 * oh * (1 - 0.45 * tg))),
            (max(1, int(0.6 * iw)), max(1, int(0.4 * oh))),
            0,
            0,
            360,
            lk.tongue,
            -1,
            cv2.LINE_AA,
        )
        teeth_h = th * (0.12 * W0 + 0.3 * oh) + tk * 0.1 * W0
        if teeth_h >= 0.5:
            cv2.rectangle(
                layer,
                (int(cx - 0.8 * iw), int(cy - 0.35 * oh - 2)),
                (int(cx + 0.8 * iw), int(cy - 0.35 * oh + teeth_h)),
                lk.teeth,
                -1,
                cv2.LINE_AA,
            )
        low_h = th * max(s - 0.2, 0) * 0.25 * oh
        if low_h >= 0.5:
            cv2.rectangle(
                layer,
                (int(cx - 0.6 * iw), int(cy + 0.65 * oh - low_h)),
                (int(cx + 0.6 * iw), int(cy + 0.65 * oh + 2)),
                lk.teeth,
                -1,
                cv2.LINE_AA,
            )
        # depth: the cavity darkens away from the lips
        return cv2.GaussianBlur(layer, (0, 0), 0.6)

    # ------------------------------------------------------------------ one frame
    def draw(self, p: np.ndarray) -> np.ndarray:
        """One frame at the drawing size (R, R, 3) float32 from mouth parameters p (len(PARAMS),)."""
        cv2, lk, x, y, R = self.cv2, self.look, self.x, self.y, self.R
        upper, lower, inner, jaw, geo = self._lips(p)
        my = lk.mouth[1]
        # the jaw carries everything below the mouth down by `jaw`; the cheeks stretch in between
        carry = np.clip((y - my) / 0.12, 0, 1)
        carry = carry * carry * (3 - 2 * carry)  # smoothstep: no crease at the mouth line
        src_y = ((y - jaw * carry) * R - 0.5).astype(np.float32)
        src_x = (x * R - 0.5).astype(np.float32)
        remap = lambda a: cv2.remap(a, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # noqa: E731
        h = np.where(y < my, self.h_upper, remap(self.h_lower) + (self.h_upper - self.h_lower) * (1 - carry))
        albedo, face = remap(self.albedo), remap(self.face)
        soft = max(0.6, 0.012 * R)
        m_up, m_lo = self._mask(upper, soft), self._mask(lower, soft)
        lips = np.clip(m_up + m_lo, 0, 1)
        # lips bulge out: a rounded volume over each lip
        h = h + 0.03 * cv2.GaussianBlur(m_up, (0, 0), 0.025 * R) + 0.04 * cv2.GaussianBlur(m_lo, (0, 0), 0.03 * R)
        corner = sum(
            _gauss(x, y, (geo[0] + sg * (geo[2] / 0.86 + 0.01 * R)) / R, geo[1] / R, 0.012, 0.01) for sg in (-1, 1)
        )
        h = h - 0.02 * corner
        lip_colour = np.asarray(lk.lip, np.float32)
        albedo = albedo * (1 - lips[..., None]) + lip_colour * lips[..., None] * (1 - 0.12 * m_up[..., None])
        # shading: Lambert + Blinn-Phong, light from (azimuth, elevation), camera looking along -z
        gy, gx = np.gradient(h, self.px)
        n = np.stack([-gx, -gy, np.ones_like(h)], -1)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        az, el = lk.light
        light = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)], np.float32)
        lambert = np.clip(n @ light, 0, 1)
        half = light + np.array([0, 0, 1], np.float32)
        half /= np.linalg.norm(half)
        spec = np.clip(n @ half, 0, 1) ** 24 * lk.shine * (1 + 1.5 * m_lo)
        img = albedo * (lk.ambient + (1 - lk.ambient) * lambert)[..., None] + 255 * spec[..., None]
        if inner is not None:
            m_in = self._mask(inner, 0.5)[..., None]
            img = img * (1 - m_in) + self._mouth_inside(geo) * (0.55 + 0.45 * lk.ambient) * m_in
        img = img * face[..., None] + np.asarray(lk.outside, np.float32) * (1 - face[..., None])
        return img * np.asarray(lk.cast, np.float32)

    # ------------------------------------------------------------------ a clip
    def render(self, track: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T, P) parameters -> (T, size, size, 3) uint8 frames with head motion, blur, noise and JPEG."""
        cv2, lk, n, size = self.cv2, self.look, len(track), self.size
        amp = lk.jitter * size / 96
        dx, dy = smooth_walk(rng, n, amp), smooth_walk(rng, n, amp)
        roll = lk.angle_deg + smooth_walk(rng, n, 1.5)
        zoom = lk.scale * (1 + smooth_walk(rng, n, 0.03))
        gain = (1 + rng.normal(0, 0.015, n)).astype(np.float32)
        nod = 0.03 * size * track[:, OPEN]  # the head nods a little as the jaw opens
        blur = lk.blur * size / 48
        frames = np.empty((n, size, size, 3), np.uint8)
        centre = (size / 2, size / 2)
        for k in range(n):
            small = cv2.resize(self.draw(track[k]), (size, size), interpolation=cv2.INTER_AREA)
            m = cv2.getRotationMatrix2D(centre, float(roll[k]), float(zoom[k]))
            m[:, 2] += (dx[k], dy[k] + nod[k])
            small = cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            small = cv2.GaussianBlur(small, (0, 0), blur) * gain[k]
            small += rng.normal(0, lk.noise, small.shape).astype(np.float32)
            rgb = np.clip(np.rint(small), 0, 255).astype(np.uint8)
            ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, lk.jpeg])
            frames[k] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else rgb
        return frames
