"""Screenshot a page in headless Chromium (how docs/img/ is made).

    .venv/bin/python scripts/screenshot.py runs/quickstart-report-*.html docs/img/report.png
    .venv/bin/python scripts/screenshot.py http://127.0.0.1:8765/ docs/img/ui.png \
        --header "Authorization=Bearer $TOKEN"

Uses the tests' DevTools-protocol driver (tests/chromium_cdp.py) and fails if the
page logs an error or fetches anything off the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from chromium_cdp import Chromium, find_chromium

LOCAL = ("file://", "data:", "about:", "http://127.0.0.1", "http://localhost")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("page", help="an HTML file or an http://127.0.0.1 URL")
    ap.add_argument("out", type=Path, help="the PNG to write")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--max-height", type=int, default=0,
                    help="crop the full-page image to this many pixels (0: whole page)")
    ap.add_argument("--header", action="append", default=[], help="NAME=VALUE request header")
    args = ap.parse_args()
    binary, why = find_chromium()
    if binary is None:
        print(f"no chromium: {why}", file=sys.stderr)
        return 1
    url = args.page if "://" in args.page else Path(args.page).resolve().as_uri()
    headers = dict(h.split("=", 1) for h in args.header)
    with Chromium(binary, width=args.width) as browser:
        visit = browser.open(url, screenshot=args.out, headers=headers or None)
    off = [u for u in visit.requests if not u.startswith(LOCAL)]
    if visit.errors() or off:
        print(f"page problems: {visit.errors()} {off}", file=sys.stderr)
        return 1
    if args.max_height:
        from PIL import Image

        with Image.open(args.out) as im:
            if im.height > args.max_height:
                im.crop((0, 0, im.width, args.max_height)).save(args.out, optimize=True)
    print(f"{args.out}: {len(visit.plots)} plots, {args.out.stat().st_size / 1024:,.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
