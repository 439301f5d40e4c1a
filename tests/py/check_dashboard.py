"""Drives the live dashboard of `stream --collect --http` in headless
Chromium (Debian's, through Playwright) and checks that:

- the page loads without console errors or failed requests,
- its live alert stream connects,
- an alert raised *after* the page loaded shows up within seconds (the
  script raises it itself: it POSTs a flash sale to /collect, then one
  later event so the watermark passes the window's end),
- the top-products table fills from /api/windows;

and saves a screenshot. Exit status 0 when all hold; the reason otherwise.
"""

import argparse
import json
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright


def post(base, token, events):
    body = "\n".join(json.dumps(e) for e in events).encode()
    req = urllib.request.Request(
        f"{base}/collect",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202, r.status


def flash_sale(product, n_views):
    """n_views views and one purchase of `product` in 10:00-10:05 UTC."""
    evs = [
        {
            "event_id": f"dash-{product}-{i}",
            "user_id": f"u{i % 37}",
            "product_id": product,
            "category": "Electronics",
            "event_type": "view",
            "timestamp": f"2026-11-24T10:0{i % 5}:{i % 60:02d}Z",
        }
        for i in range(n_views)
    ]
    evs.append(dict(evs[0], event_id=f"dash-{product}-buy", event_type="purchase"))
    return evs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--token", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: "/api/alerts/stream" in r.url or problems.append(f"failed: {r.url}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))

        page.goto(f"{args.url}/?token={args.token}")
        page.wait_for_selector("#state.live", timeout=10_000)

        # Raise an alert now that the page listens.
        raised = time.monotonic()
        post(args.url, args.token, flash_sale("p-dash-hot", 150))
        post(args.url, args.token, [dict(flash_sale("p-dash-tick", 1)[0], timestamp="2026-11-24T10:30:00Z")])
        page.wait_for_selector('#alerts li.alert:has-text("p-dash-hot")', timeout=10_000)
        seconds = time.monotonic() - raised

        # The windows table fills on its next poll.
        page.wait_for_selector("#top tr", timeout=10_000)
        page.wait_for_timeout(1500)  # one more stats tick so the charts have points
        page.screenshot(path=args.screenshot, full_page=True)
        text = page.inner_text("#alerts")
        browser.close()

    if "150 views" not in text:
        problems.append(f"alert text lacks the counts: {text!r}")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"dashboard showed the alert {seconds:.2f}s after it was raised")


if __name__ == "__main__":
    main()
