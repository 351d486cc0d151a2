"""Draw the project's own sample images: a car illustration and three paintings.

All four are procedural, so the project may redistribute them freely. Run from the repo root:
    python samples/make_samples.py
It rewrites car.png, fluid.png, swirls.png and strokes.png in samples/ deterministically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def _vertical_gradient(
    size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> Image.Image:
    width, height = size
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    colours = (1 - t) * np.array(top) + t * np.array(bottom)
    return Image.fromarray(np.repeat(colours, width, axis=1).astype(np.uint8))


def draw_car(size: tuple[int, int] = (768, 512)) -> Image.Image:
    """A red coupé on a road at dusk: clear shapes, shading, background and detail."""
    width, height = size
    scale = width / 768
    s = lambda *v: tuple(int(round(x * scale)) for x in v)  # noqa: E731
    image = _vertical_gradient(size, (255, 170, 110), (120, 170, 225)).convert("RGBA")
    draw = ImageDraw.Draw(image)
    # sun and distant hills
    draw.ellipse(s(520, 70, 640, 190), fill=(255, 236, 170))
    draw.polygon(
        [
            s(0, 300)[0:2],
            s(120, 230),
            s(260, 280),
            s(380, 215),
            s(520, 275),
            s(640, 225),
            s(768, 290),
            s(768, 340),
            s(0, 340),
        ],
        fill=(86, 120, 96),
    )
    draw.polygon(
        [s(0, 330), s(180, 290), s(360, 320), s(560, 285), s(768, 320), s(768, 360), s(0, 360)],
        fill=(60, 95, 70),
    )
    # trees
    for x, h in ((70, 70), (130, 95), (660, 85), (720, 60)):
        draw.rectangle(s(x - 4, 330 - h // 3, x + 4, 340), fill=(70, 50, 35))
        draw.ellipse(s(x - 26, 330 - h, x + 26, 340 - h // 3), fill=(40, 90, 55))
        draw.ellipse(s(x - 18, 322 - h, x + 8, 330 - h // 2), fill=(70, 130, 80))
    # road with lane marks
    draw.rectangle(s(0, 360, 768, 512), fill=(70, 72, 78))
    draw.rectangle(s(0, 356, 768, 362), fill=(200, 200, 190))
    for x in range(0, 768, 90):
        draw.rectangle(s(x, 462, x + 50, 470), fill=(235, 220, 120))
    # shadow under the car
    draw.ellipse(s(120, 398, 660, 440), fill=(35, 35, 40))
    # body: lower hull and cabin
    body = [
        s(110, 400),
        s(105, 350),
        s(130, 320),
        s(230, 300),
        s(300, 235),
        s(470, 230),
        s(560, 295),
        s(650, 310),
        s(670, 340),
        s(665, 400),
    ]
    draw.polygon(body, fill=(196, 30, 38))
    # upper highlight band and lower shading band for volume
    draw.polygon(
        [s(130, 322), s(230, 302), s(650, 312), s(662, 330), s(120, 340)], fill=(226, 70, 70)
    )
    draw.polygon([s(108, 380), s(668, 380), s(665, 400), s(110, 400)], fill=(140, 18, 26))
    # windows with a pillar and reflections
    draw.polygon([s(250, 300), s(312, 245), s(385, 243), s(385, 300)], fill=(150, 200, 235))
    draw.polygon([s(398, 243), s(462, 243), s(535, 300), s(398, 300)], fill=(130, 185, 225))
    draw.polygon([s(320, 250), s(340, 250), s(300, 298), s(280, 298)], fill=(210, 235, 250))
    draw.polygon([s(420, 248), s(432, 248), s(412, 298), s(400, 298)], fill=(200, 230, 248))
    # door lines and handles
    draw.line([s(390, 302), s(390, 385)], fill=(110, 15, 20), width=max(1, int(3 * scale)))
    draw.line([s(250, 302), s(245, 385)], fill=(110, 15, 20), width=max(1, int(3 * scale)))
    draw.rectangle(s(345, 318, 372, 324), fill=(235, 235, 235))
    draw.rectangle(s(480, 318, 507, 324), fill=(235, 235, 235))
    # lights and bumpers
    draw.polygon([s(640, 318), s(668, 330), s(668, 348), s(636, 340)], fill=(255, 245, 190))
    draw.polygon([s(108, 335), s(128, 328), s(128, 350), s(106, 352)], fill=(255, 90, 60))
    draw.rectangle(s(100, 388, 140, 398), fill=(180, 180, 185))
    draw.rectangle(s(640, 388, 676, 398), fill=(180, 180, 185))
    # wheels: tyre, rim, spokes, hub
    for cx in (220, 555):
        cy = 400
        draw.ellipse(s(cx - 52, cy - 52, cx + 52, cy + 52), fill=(25, 25, 28))
        draw.ellipse(s(cx - 32, cy - 32, cx + 32, cy + 32), fill=(175, 178, 185))
        for angle in np.linspace(0, 2 * np.pi, 6, endpoint=False):
            dx, dy = 28 * np.cos(angle), 28 * np.sin(angle)
            draw.line(
                [s(cx, cy), s(cx + dx, cy + dy)], fill=(95, 98, 105), width=max(1, int(5 * scale))
            )
        draw.ellipse(s(cx - 8, cy - 8, cx + 8, cy + 8), fill=(60, 60, 66))
        # wheel arch
        draw.arc(
            s(cx - 62, cy - 62, cx + 62, cy + 62),
            180,
            360,
            fill=(90, 10, 16),
            width=max(1, int(6 * scale)),
        )
    image = image.convert("RGB").filter(ImageFilter.SMOOTH)
    return image


def _value_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    grid = rng.random((cells + 1, cells + 1))
    ys = np.linspace(0, cells, shape[0], endpoint=False)
    xs = np.linspace(0, cells, shape[1], endpoint=False)
    y0, x0 = ys.astype(int), xs.astype(int)
    ty, tx = ys - y0, xs - x0
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)  # smoothstep
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    top = a + (b - a) * tx[None, :]
    bottom = c + (d - c) * tx[None, :]
    return top + (bottom - top) * ty[:, None]


def _fbm(
    shape: tuple[int, int], rng: np.random.Generator, octaves: int = 5, base: int = 3
) -> np.ndarray:
    total = np.zeros(shape)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * _value_noise(shape, base * 2**octave, rng)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def _sample(field: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    h, w = field.shape
    return field[np.clip(y, 0, h - 1).astype(int), np.clip(x, 0, w - 1).astype(int)]


def draw_fluid(size: int = 512, seed: int = 7) -> Image.Image:
    """Acrylic-pour style painting: domain-warped noise through a gold/black/teal/violet palette."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    base = _fbm(shape, rng)
    warp_a, warp_b = _fbm(shape, rng), _fbm(shape, rng)
    strength = size * 0.35
    y1 = yy + strength * (warp_a - 0.5)
    x1 = xx + strength * (warp_b - 0.5)
    warp_c, warp_d = _fbm(shape, rng), _fbm(shape, rng)
    y2 = y1 + strength * (_sample(warp_c, y1, x1) - 0.5)
    x2 = x1 + strength * (_sample(warp_d, y1, x1) - 0.5)
    value = _sample(base, y2, x2)
    # Banding makes the cells and veins typical of fluid art.
    value = (value - value.min()) / (value.max() - value.min())
    bands = (value * 7.0) % 1.0
    palette = np.array(
        [
            (12, 10, 14),
            (212, 160, 40),
            (250, 222, 120),
            (16, 120, 130),
            (60, 200, 190),
            (90, 40, 140),
            (170, 110, 210),
            (12, 10, 14),
        ],
        dtype=float,
    )
    position = bands * (len(palette) - 1)
    index = position.astype(int)
    t = (position - index)[..., None]
    colours = palette[index] * (1 - t) + palette[np.minimum(index + 1, len(palette) - 1)] * t
    # thin dark veins where bands wrap around, and a soft sheen
    vein = np.exp(-(np.minimum(bands, 1 - bands) ** 2) / 0.0008)[..., None]
    colours = colours * (1 - 0.85 * vein)
    sheen = _fbm(shape, rng, octaves=3, base=2)[..., None]
    colours = np.clip(colours * (0.8 + 0.4 * sheen), 0, 255)
    return Image.fromarray(colours.astype(np.uint8)).filter(ImageFilter.SMOOTH_MORE)


def draw_swirls(size: int = 512, seed: int = 11) -> Image.Image:
    """Large swirling brushwork (night-sky style): noise smeared along a field of vortices.

    A line-integral convolution: each pixel averages noise along the streamline through it,
    so the texture follows big spirals, the large-scale structure a style loss must carry.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    vy, vx = np.zeros_like(yy), np.zeros_like(xx)
    centres = rng.uniform(0.1, 0.9, size=(7, 2)) * size
    for (cy, cx), spin in zip(centres, rng.choice([-1.0, 1.0], size=7), strict=True):
        dy, dx = yy - cy, xx - cx
        falloff = np.exp(-(dy**2 + dx**2) / (2 * (size * 0.16) ** 2))
        vy += spin * dx * falloff
        vx -= spin * dy * falloff
    vx += 0.25 * size * 0.05 * (_fbm((size, size), rng, octaves=3, base=2) - 0.3)
    norm = np.hypot(vy, vx) + 1e-6
    vy, vx = vy / norm, vx / norm
    # Streaky noise: elongated specks give visible brush marks once smeared.
    noise = (rng.random((size, size)) > 0.82).astype(float)
    total = np.zeros_like(yy)
    for direction in (1.0, -1.0):
        py, px = yy.copy(), xx.copy()
        for _ in range(14):
            iy, ix = np.clip(py, 0, size - 1).astype(int), np.clip(px, 0, size - 1).astype(int)
            total += noise[iy, ix]
            py += direction * 1.5 * vy[iy, ix]
            px += direction * 1.5 * vx[iy, ix]
    streaks = total / 28.0
    value = 0.55 * _fbm((size, size), rng, octaves=4, base=2) + 0.45 * streaks / streaks.max()
    # Equalise, so every colour of the palette (yellow moons included) covers its share.
    value = np.argsort(np.argsort(value.ravel())).reshape(value.shape) / value.size
    palette = np.array(
        [
            (10, 22, 60),
            (24, 52, 120),
            (46, 96, 170),
            (110, 160, 200),
            (235, 215, 110),
            (250, 240, 190),
        ],
        dtype=float,
    )
    position = value * (len(palette) - 1)
    index = np.minimum(position.astype(int), len(palette) - 2)
    t = (position - index)[..., None]
    colours = palette[index] * (1 - t) + palette[index + 1] * t
    return Image.fromarray(np.clip(colours, 0, 255).astype(np.uint8))


def draw_strokes(size: tuple[int, int] = (640, 480), seed: int = 5) -> Image.Image:
    """Bold expressionist brushwork: big flat strokes with bristle streaks, few strong colours."""
    rng = np.random.default_rng(seed)
    width, height = size
    palette = [
        (200, 40, 30),
        (240, 140, 20),
        (250, 210, 60),
        (30, 60, 140),
        (20, 130, 120),
        (240, 235, 220),
        (25, 20, 25),
    ]
    image = Image.new("RGB", size, (230, 200, 150))
    draw = ImageDraw.Draw(image)
    for _ in range(420):
        length = rng.uniform(0.08, 0.3) * width
        thickness = rng.uniform(0.02, 0.06) * width
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.normal(0.6 if cy < height / 2 else -0.4, 0.5)
        colour = np.array(palette[rng.integers(len(palette))], dtype=float)
        ux, uy = np.cos(angle), np.sin(angle)
        nx, ny = -uy, ux
        # Bristles: parallel lines across the stroke's width, each a slightly other shade.
        for offset in np.linspace(-thickness / 2, thickness / 2, max(3, int(thickness / 2))):
            shade = np.clip(colour * rng.uniform(0.8, 1.15) + rng.normal(0, 8, 3), 0, 255)
            start = length * rng.uniform(0.0, 0.12)
            x0, y0 = (
                cx + nx * offset - ux * (length / 2 - start),
                cy + ny * offset - uy * (length / 2 - start),
            )
            x1, y1 = cx + nx * offset + ux * length / 2, cy + ny * offset + uy * length / 2
            draw.line([(x0, y0), (x1, y1)], fill=tuple(int(c) for c in shade), width=3)
    return image.filter(ImageFilter.SMOOTH)


def draw_cubist(size: tuple[int, int] = (512, 512), seed: int = 3) -> Image.Image:
    """A dark, muted, faceted painting (analytic-cubism style): Voronoi facets in browns,
    ochres and grey-greens, each shaded across, with dark edges. The palette is far from a
    photo's bright sky, the case a style loss on VGG statistics alone can miss."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    points = rng.uniform(0, 1, size=(90, 2)) * (height, width)
    distances = np.stack([np.hypot(yy - py, xx - px) for py, px in points])
    order = np.argsort(distances, axis=0)
    nearest, second = order[0], order[1]
    gap = (
        np.take_along_axis(distances, order[1:2], 0)[0]
        - np.take_along_axis(distances, order[:1], 0)[0]
    )
    palette = np.array(
        [
            (62, 52, 40),
            (98, 82, 58),
            (128, 108, 74),
            (80, 84, 70),
            (58, 64, 66),
            (150, 132, 96),
            (40, 34, 30),
        ],
        dtype=float,
    )
    colour_of = palette[rng.integers(len(palette), size=len(points))]
    angle = rng.uniform(0, 2 * np.pi, size=len(points))
    # Each facet shaded along its own direction, as if lit from one side.
    along = (np.cos(angle)[nearest] * (xx - points[nearest, 1])) + (
        np.sin(angle)[nearest] * (yy - points[nearest, 0])
    )
    shade = 1.0 + 0.35 * np.tanh(along / (0.08 * width))
    colours = colour_of[nearest] * shade[..., None]
    edge = np.exp(-(gap**2) / 6.0)[..., None]
    colours = colours * (1 - 0.7 * edge) + 0.03 * (second % 2)[..., None]
    grain = _fbm((height, width), rng, octaves=4, base=8)[..., None]
    colours = np.clip(colours * (0.85 + 0.3 * grain), 0, 255)
    return Image.fromarray(colours.astype(np.uint8)).filter(ImageFilter.SMOOTH)


def main() -> None:
    draw_car().save(HERE / "car.png", optimize=True)
    draw_fluid().save(HERE / "fluid.png", optimize=True)
    draw_swirls().save(HERE / "swirls.png", optimize=True)
    draw_strokes().save(HERE / "strokes.png", optimize=True)
    draw_cubist().save(HERE / "cubist.png", optimize=True)


if __name__ == "__main__":
    main()
