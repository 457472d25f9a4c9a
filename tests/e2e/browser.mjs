// The headless Chromium every browser test drives: Debian's /usr/bin/chromium (or $CHROMIUM) through
// playwright-core, with a fresh temporary profile per launch (playwright makes and deletes it) and the
// switches that keep it quiet and off the network.
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
