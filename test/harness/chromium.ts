import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

/**
 * Debian's Chromium, driven by playwright-core, for the dashboard's browser tests. Without it the
 * browser tests are skipped on a developer's machine, and fail in CI (.ci/run sets CI and installs it).
 */

/** Where the browser tests leave their screenshots. */
export const ARTIFACTS = process.env.LMGATE_TEST_ARTIFACTS ?? join(tmpdir(), "lmgate-test-artifacts");

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** Debian's Chromium, or why the browser tests cannot run. `.ci/run` installs it on a fresh machine. */
function findChromium(): { path: string } | { skip: string } {
  if (existsSync(CHROMIUM)) return { path: CHROMIUM };
  return { skip: `${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium), as .ci/run does` };
}

const browserFound = findChromium();

/** Why this machine skips the browser tests; undefined when they run (in CI a missing browser fails them instead). */
export const skipBrowser = "skip" in browserFound && !process.env.CI ? browserFound.skip : undefined;
if (skipBrowser !== undefined) console.warn(`dashboard browser tests SKIPPED: ${skipBrowser}`);

/** Starts headless Chromium, or fails saying why there is none. */
export async function launchChromium(): Promise<Browser> {
  if ("skip" in browserFound) throw new Error(`no browser: ${browserFound.skip}`);
  return chromium.launch({ executablePath: browserFound.path, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** A dashboard page signed in with the admin token, and the page's uncaught errors as they come. */
export interface AdminDashboard {
  page: Page;
  pageErrors: string[];
  /** Its own browser context: closing it ends the page. */
  context: BrowserContext;
}

/** Opens the gateway's dashboard in a fresh context and signs in with the admin token. */
export async function openDashboardAsAdmin(browser: Browser, gatewayUrl: string, adminToken: string): Promise<AdminDashboard> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(`${gatewayUrl}/dashboard/`, { timeout: 20_000 });
  await page.fill("#token", adminToken);
  await page.click("#signin-button");
  await page.locator("#dashboard-view").waitFor({ state: "visible", timeout: 10_000 });
  return { page, pageErrors, context };
}
