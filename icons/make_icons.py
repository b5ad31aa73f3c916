#!/usr/bin/env python3
"""Generate Quotabell's tray icons, app icons and preview sheet.

Usage:  python3 icons/make_icons.py        (needs Pillow: pip install pillow)

Everything is drawn as vector-ish shapes on a 32-unit grid, rendered at a
high supersampling factor and downscaled with a Lanczos filter, so the output
is deterministic and crisp.  Outputs (relative to this script's directory):

  tray/{ok,warning,over,offline,signed-out,paused}.png   32x32 RGBA
  {16,22,24,32,48,64,128,256}x{same}.png icon.png (512)  app icons, RGBA
  preview.png                                            review sheet
"""

import math
import os

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
SS = 16  # supersampling: pixels per grid unit when rendering a 32-unit icon

# ---------------------------------------------------------------- palette
OUTLINE = (24, 24, 27, 255)      # dark halo, visible on light panels
LIGHT = (244, 244, 245, 255)     # neutral bell fill, visible on dark panels
GREEN = (34, 197, 94, 255)
AMBER = (245, 158, 11, 255)
RED = (220, 38, 38, 255)
BLUE = (59, 130, 246, 255)
GREY = (156, 163, 175, 255)
HOLLOW = (138, 143, 152, 255)
WHITE = (255, 255, 255, 255)
INDIGO = (79, 70, 229, 255)      # brand colour #4F46E5


# ---------------------------------------------------------------- geometry
def bezier(p0, p1, p2, p3, n=24):
    pts = []
    for i in range(n + 1):
        t = i / n
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
        pts.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                    a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return pts


def arc(cx, cy, r, a0, a1, n=32):
    return [(cx + r * math.cos(math.radians(a0 + (a1 - a0) * i / n)),
             cy + r * math.sin(math.radians(a0 + (a1 - a0) * i / n)))
            for i in range(n + 1)]


# A shape is a list of primitives in grid units:
#   ("poly", [(x, y), ...])   filled polygon
#   ("circle", (cx, cy), r)
#   ("seg", (x0, y0), (x1, y1), w)   thick segment with round caps
def bell_body():
    """Bell (dome + flared sides + lip), knob and clapper."""
    cx = 16
    dome = arc(cx, 12.5, 7.5, 180, 360)                    # left -> right over the top
    right = bezier((23.5, 12.5), (23.5, 18.5), (25.5, 20.5), (27.5, 21.5))
    left = bezier((4.5, 21.5), (6.5, 20.5), (8.5, 18.5), (8.5, 12.5))
    body = left + dome + right + [(27.5, 24.0), (4.5, 24.0)]
    return [
        ("poly", body),
        ("seg", (5.2, 22.6), (26.8, 22.6), 2.8),            # rounded lip
        ("circle", (cx, 4.4), 2.3),                         # knob
        ("circle", (cx, 26.0), 3.1),                        # clapper
    ]


def render(shape, size, grow=0.0, ss=SS, unit=None):
    """Render `shape` to an L mask of size*ss pixels, dilated by `grow` units."""
    unit = unit if unit is not None else size / 32.0
    px = unit * ss
    img = Image.new("L", (size * ss, size * ss), 0)
    d = ImageDraw.Draw(img)

    def P(p):
        return (p[0] * px, p[1] * px)

    for prim in shape:
        kind = prim[0]
        if kind == "poly":
            pts = [P(p) for p in prim[1]]
            d.polygon(pts, fill=255)
            if grow > 0:
                w = grow * 2 * px
                d.line(pts + [pts[0]], fill=255, width=max(1, round(w)), joint="curve")
                for p in pts:
                    r = grow * px
                    d.ellipse((p[0] - r, p[1] - r, p[0] + r, p[1] + r), fill=255)
        elif kind == "circle":
            (x, y), r = P(prim[1]), (prim[2] + grow) * px
            if r > 0:
                d.ellipse((x - r, y - r, x + r, y + r), fill=255)
        elif kind == "seg":
            a, b = P(prim[1]), P(prim[2])
            r = (prim[3] / 2 + grow) * px
            if r > 0:
                d.line([a, b], fill=255, width=max(1, round(2 * r)))
                for (x, y) in (a, b):
                    d.ellipse((x - r, y - r, x + r, y + r), fill=255)
        else:
            raise ValueError(kind)
    return img


class Canvas:
    """RGBA supersampled canvas with layer helpers."""

    def __init__(self, size, ss=SS, unit=None):
        self.size, self.ss = size, ss
        self.unit = unit if unit is not None else size / 32.0
        self.img = Image.new("RGBA", (size * ss, size * ss), (0, 0, 0, 0))

    def mask(self, shape, grow=0.0):
        return render(shape, self.size, grow, self.ss, self.unit)

    def paint(self, shape, color, grow=0.0):
        layer = Image.new("RGBA", self.img.size, color)
        self.img.paste(layer, (0, 0), self.mask(shape, grow))

    def paint_mask(self, mask, color):
        layer = Image.new("RGBA", self.img.size, color)
        self.img.paste(layer, (0, 0), mask)

    def erase(self, shape, grow=0.0):
        m = self.mask(shape, grow)
        a = self.img.getchannel("A")
        self.img.putalpha(ImageChops.subtract(a, m))

    def result(self):
        return self.img.resize((self.size, self.size), Image.BOX)


# ---------------------------------------------------------------- badges
BADGE_C = (23.6, 23.6)
BADGE_R = 7.0          # coloured disc radius
RING = 1.4             # dark ring around badges
GAP = 1.2              # transparent gap cut into the bell around a badge


def disc_badge(c, color, glyph):
    """Cut a gap in the bell, then draw a disc badge with a glyph."""
    disc = [("circle", BADGE_C, BADGE_R)]
    c.erase(disc, RING + GAP)
    c.paint(disc, OUTLINE, RING)
    c.paint(disc, color)
    c.paint(glyph, WHITE)


def triangle_badge(c, color):
    cx, cy = BADGE_C
    # rounded warning triangle, apex up
    tri = [("poly", [(cx, cy - 6.4), (cx + 6.9, cy + 5.3), (cx - 6.9, cy + 5.3)])]
    rounding = 1.2
    c.erase(tri, rounding + RING + GAP)
    c.paint(tri, OUTLINE, rounding + RING)
    c.paint(tri, color, rounding)
    bang = [("seg", (cx, cy - 2.6), (cx, cy + 1.0), 2.6),
            ("circle", (cx, cy + 4.1), 1.4)]
    c.paint(bang, OUTLINE)


# ---------------------------------------------------------------- tray states
STROKE = 1.6  # dark outline around the bell (grid units, i.e. px at 32x32)


def filled_bell(c, fill):
    bell = bell_body()
    c.paint(bell, OUTLINE, STROKE)
    c.paint(bell, fill)


def tray_ok(c):
    filled_bell(c, GREEN)


def tray_warning(c):
    filled_bell(c, LIGHT)
    triangle_badge(c, AMBER)


def tray_over(c):
    filled_bell(c, RED)
    cx, cy = BADGE_C
    disc_badge(c, RED, [("seg", (cx - 3.7, cy), (cx + 3.7, cy), 3.0)])


def tray_paused(c):
    filled_bell(c, LIGHT)
    cx, cy = BADGE_C
    disc_badge(c, BLUE, [("seg", (cx - 2.2, cy - 2.9), (cx - 2.2, cy + 2.9), 2.7),
                         ("seg", (cx + 2.2, cy - 2.9), (cx + 2.2, cy + 2.9), 2.7)])


def tray_offline(c):
    filled_bell(c, GREY)
    slash = [("seg", (4.5, 3.5), (28.0, 29.0), 3.0)]
    c.erase(slash, STROKE + 0.9)          # transparent channel either side
    c.paint(slash, OUTLINE, 1.2)
    c.paint(slash, LIGHT)


def erode(mask, amount, c):
    k = int(round(amount * c.unit * c.ss)) * 2 + 1
    return mask.filter(ImageFilter.MinFilter(k)) if k > 1 else mask


def tray_signed_out(c):
    """Hollow bell: a thick grey ring (dark halo both sides); solid knob and clapper."""
    bell = bell_body()
    body, solid = bell[:2], bell[2:]          # solid = knob + clapper
    w, halo = 3.0, 1.0                     # ring thickness, halo each side
    plain = c.mask(body, 0)
    outline = ImageChops.subtract(c.mask(body, w / 2 + halo), erode(plain, w / 2 + halo, c))
    ring = ImageChops.subtract(c.mask(body, w / 2), erode(plain, w / 2, c))
    c.paint_mask(outline, OUTLINE)
    c.paint(solid, OUTLINE, halo + 0.3)
    c.paint_mask(ring, HOLLOW)
    c.paint(solid, HOLLOW, 0.3)


TRAY = [
    ("ok", tray_ok),
    ("warning", tray_warning),
    ("over", tray_over),
    ("offline", tray_offline),
    ("signed-out", tray_signed_out),
    ("paused", tray_paused),
]


# ---------------------------------------------------------------- app icon
APP_ICON_SIZES = [16, 22, 24, 32, 48, 64, 128, 256]  # and icon.png, 512


def app_icon(size):
    ss = 4 if size >= 256 else 8
    c = Canvas(size, ss=ss)
    u = c.unit * ss
    # rounded square, small margin as per platform icon grids
    m = 1.0 * u
    bg = Image.new("L", c.img.size, 0)
    ImageDraw.Draw(bg).rounded_rectangle((m, m, c.img.size[0] - m, c.img.size[1] - m),
                                         radius=7.0 * u, fill=255)
    c.paint_mask(bg, INDIGO)
    # bell, scaled to ~70% and centred
    s, off = 0.70, 16 * (1 - 0.70)

    def xf(shape):
        out = []
        for prim in shape:
            if prim[0] == "poly":
                out.append(("poly", [(x * s + off, y * s + off + 0.3) for x, y in prim[1]]))
            elif prim[0] == "circle":
                (x, y), r = prim[1], prim[2]
                out.append(("circle", (x * s + off, y * s + off + 0.3), r * s))
            elif prim[0] == "seg":
                (x0, y0), (x1, y1), w = prim[1], prim[2], prim[3]
                out.append(("seg", (x0 * s + off, y0 * s + off + 0.3),
                            (x1 * s + off, y1 * s + off + 0.3), w * s))
        return out

    bell = xf(bell_body())
    c.paint(bell, (30, 27, 75, 70), 0.6)     # subtle darker rim
    c.paint(bell, WHITE)
    return c.result()


# ---------------------------------------------------------------- preview
def preview(tray):
    """Tray icons at 16/22/24 px (downscaled from the 32 px files, as panels
    do) on a light and a dark strip, plus a 3x zoom of the 16 px version."""
    sizes = [16, 22, 24]
    font_path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    try:
        font = ImageFont.truetype(font_path, 11)
    except OSError:
        font = ImageFont.load_default()
    col_w, label_w = 72, 78
    rows = [(f"{px} px", px, 1) for px in sizes] + [("16 px x3", 16, 3)]
    row_hs = [32, 32, 32, 56]
    strip_h = sum(row_hs) + 8
    W = label_w + col_w * len(tray)
    H = 22 + 2 * strip_h + 52
    sheet = Image.new("RGBA", (W, H), (255, 255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, (name, _) in enumerate(tray):
        tw = d.textlength(name, font=font)
        d.text((label_w + i * col_w + (col_w - tw) / 2, 5), name, fill=(0, 0, 0), font=font)
    for s_i, (bg, fg, tag) in enumerate([((240, 240, 240), (40, 40, 40), "light"),
                                         ((32, 32, 32), (220, 220, 220), "dark")]):
        y0 = 22 + s_i * strip_h
        d.rectangle((0, y0, W, y0 + strip_h - 1), fill=bg)
        y = y0 + 4
        for (label, px, zoom), rh in zip(rows, row_hs):
            d.text((6, y + rh / 2 - 7), f"{tag} {label}", fill=fg, font=font)
            for i, (name, img) in enumerate(tray):
                small = img.resize((px, px), Image.LANCZOS) if px != 32 else img
                if zoom > 1:
                    # zoom on the composited pixels, so it shows what is seen
                    tile = Image.new("RGBA", (px, px), bg + (255,))
                    tile.alpha_composite(small)
                    small = tile.resize((px * zoom, px * zoom), Image.NEAREST)
                side = px * zoom
                sheet.alpha_composite(small, (label_w + i * col_w + (col_w - side) // 2,
                                              y + (rh - side) // 2))
            y += rh
    # app icons along the bottom
    y = 22 + 2 * strip_h + 8
    d.text((6, y + 12), "app icon", fill=(0, 0, 0), font=font)
    x = label_w + (col_w - 32) // 2
    for fname, show in (("32x32.png", 32), ("128x128.png", 36), ("icon.png", 36)):
        ic = Image.open(os.path.join(HERE, fname)).convert("RGBA")
        if ic.size[0] != show:
            ic = ic.resize((show, show), Image.LANCZOS)
        sheet.alpha_composite(ic, (x, y))
        x += col_w
    return sheet


def main():
    os.makedirs(os.path.join(HERE, "tray"), exist_ok=True)
    rendered = []
    for name, fn in TRAY:
        c = Canvas(32)
        fn(c)
        img = c.result()
        img.save(os.path.join(HERE, "tray", f"{name}.png"))
        rendered.append((name, img))
    # One file per size of the hicolor icon theme's apps directories that desktops look up
    # (menus 16-48, docks 64-256, app stores 512), so none is scaled from another size.
    for size in APP_ICON_SIZES:
        app_icon(size).save(os.path.join(HERE, f"{size}x{size}.png"))
    app_icon(512).save(os.path.join(HERE, "icon.png"))
    preview(rendered).save(os.path.join(HERE, "preview.png"))


if __name__ == "__main__":
    main()
