"""A person's browser single sign-on, in headless Chromium driven by Selenium.

Run by tests/it/browser_sso.rs against a stack it started (real Envoy, real oidc-provider,
cedargate with `sso`); also by scripts/demo.sh. Steps, each printed as one JSON line:

  1. open a protected page -> the IdP's login form; log in (dev form, any password) and consent
     -> back on the page, served by the upstream with the user as principal;
  2. reload -> the page again, no login;
  3. open a page the policies refuse -> 403;
  4. log out -> the IdP's logout confirmation; confirm -> back on the post-logout page;
  5. open the protected page again -> the IdP's login form.

Exit 0 when every step saw what it should; otherwise 1 with the step and what the page showed.
Usage: sso_login.py --base http://127.0.0.1:PORT --idp http://127.0.0.1:PORT [--user bob]
        [--screenshot FILE]
"""

import argparse
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

STEP_TIMEOUT = 10  # seconds per wait; the whole run stays well under a minute


def step(name, **facts):
    print(json.dumps({"step": name, **facts}), flush=True)


def fail(name, driver, why):
    body = ""
    try:
        body = driver.find_element(By.TAG_NAME, "body").text[:500]
    except Exception:  # noqa: BLE001 - the page may be gone; the message matters more
        pass
    print(json.dumps({"step": name, "failed": why, "url": driver.current_url, "body": body}), flush=True)
    sys.exit(1)


def body_text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for(driver, name, predicate, why):
    try:
        WebDriverWait(driver, STEP_TIMEOUT).until(lambda d: predicate(d))
    except Exception:  # noqa: BLE001 - Selenium's TimeoutException, or a page in flux
        fail(name, driver, why)


def on_login_form(driver, idp):
    return driver.current_url.startswith(idp + "/interaction/") and driver.find_elements(By.NAME, "login")


def submit(driver):
    driver.find_element(By.CSS_SELECTOR, "form [type=submit]").click()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="Envoy's listener, http://127.0.0.1:PORT")
    parser.add_argument("--idp", required=True, help="the IdP's issuer URL")
    parser.add_argument("--user", default="bob")
    parser.add_argument("--page", default="/orders/42", help="a page the user may see")
    parser.add_argument("--refused", default="/reports/daily", help="a page the policies refuse the user")
    parser.add_argument("--screenshot", help="write a PNG of the logged-in page here")
    args = parser.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(STEP_TIMEOUT)
    started = time.monotonic()
    page = args.base + args.page
    try:
        # 1. Login.
        driver.get(page)
        wait_for(driver, "login", lambda d: on_login_form(d, args.idp), "no login form at the IdP")
        driver.find_element(By.NAME, "login").send_keys(args.user)
        driver.find_element(By.NAME, "password").send_keys("any-password")
        submit(driver)
        # The consent form (offline_access asks for it), then back to the page.
        wait_for(
            driver,
            "consent",
            lambda d: d.current_url == page or (d.current_url.startswith(args.idp + "/interaction/")
                                                and not d.find_elements(By.NAME, "login")),
            "neither the consent form nor the page after login",
        )
        if driver.current_url != page:
            submit(driver)
        principal = f'User::\\"{args.user}\\"'
        wait_for(driver, "page", lambda d: d.current_url == page and principal in body_text(d),
                 f"the page with principal {principal} after login")
        cookies = {c["name"]: c for c in driver.get_cookies()}
        session = cookies.get("__Host-cedargate-session")
        if not session or not session.get("httpOnly") or not session.get("secure"):
            fail("page", driver, f"no HttpOnly Secure session cookie: {sorted(cookies)}")
        if "__Host-cedargate-session" in body_text(driver):
            fail("page", driver, "the upstream saw cedargate's session cookie")
        step("login", user=args.user, url=driver.current_url, same_site=session.get("sameSite"))
        if args.screenshot:
            driver.save_screenshot(args.screenshot)

        # 2. Reload: no new login.
        driver.refresh()
        wait_for(driver, "reload", lambda d: d.current_url == page and principal in body_text(d),
                 "the page after a reload, without a login")
        step("reload", url=driver.current_url)

        # 3. Refused by policy.
        driver.get(args.base + args.refused)
        wait_for(driver, "refused", lambda d: '"status":403' in body_text(d).replace(" ", ""),
                 "a 403 on the refused page")
        step("refused", url=driver.current_url)

        # 4. Logout: the IdP asks to confirm, then sends the browser back.
        driver.get(args.base + "/_cedargate/logout")
        wait_for(driver, "logout", lambda d: d.current_url.startswith(args.idp + "/session/end"),
                 "the IdP's logout page")
        driver.find_element(By.CSS_SELECTOR, "button[name=logout][value=yes]").click()
        wait_for(driver, "logout", lambda d: d.current_url.startswith(args.base),
                 "back from the IdP after logout")
        if any(c["name"] == "__Host-cedargate-session" for c in driver.get_cookies()):
            fail("logout", driver, "the session cookie survived logout")
        step("logout", url=driver.current_url)

        # 5. Logged out: the page sends the browser to log in again.
        driver.get(page)
        wait_for(driver, "login_again", lambda d: on_login_form(d, args.idp),
                 "no login form after logout")
        step("login_again", url=driver.current_url.split("?")[0])
        step("done", seconds=round(time.monotonic() - started, 1))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
