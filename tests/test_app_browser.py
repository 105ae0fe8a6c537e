"""The web page in headless Chromium (``-m browser``), driven as a person would: clicks, the
palette, undo and clear, a bad file, the downloads, click -> new picture timing, a click that
recolours its region.  Skipped, with the reason, without chromium, chromedriver or selenium;
without gradio (requirements-app.txt) the module is skipped.
"""
import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_DIR

pytest.importorskip('gradio', reason='the page needs gradio: pip install -r requirements-app.txt')

import app  # noqa: E402
import colorize  # noqa: E402

sys.path.insert(0, os.path.join(REPO_DIR, 'bench'))
# the benchmark's colour picking and its timing in the page ([in the page, painted] per new picture)
from bench_app import LATENCY_JS, browser_missing, set_colour  # noqa: E402
from app_support import (  # noqa: E402
    BLUE, CHROMEDRIVER, CHROMIUM, GREEN, HINT_SIZE, PHOTO_SIZE, POINT_A, POINT_B, data_url_picture,
    hex_hue, hue_chroma, hue_distance, ring_mean)


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    """Headless Chromium through Debian's chromedriver (no driver download), loopback only."""
    why = browser_missing()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which('chromium') or CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1400,1000',
                 '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--no-first-run'):
        options.add_argument(flag)
    downloads = str(tmp_path_factory.mktemp('downloads'))
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd('Browser.setDownloadBehavior', {'behavior': 'allow', 'downloadPath': downloads})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def status_text(driver):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, 'status').text


def set_hint_size(driver, size):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    field = driver.find_element(By.CSS_SELECTOR, '#hint-size input[type=number]')
    field.send_keys(Keys.CONTROL, 'a')
    field.send_keys(str(size), Keys.ENTER)


def click_photo_pixel(driver, x, y):
    """Click the shown picture at the centre of its pixel (x, y).

    WebDriver's offsets count from the element's centre in whole CSS pixels (floored), and the
    picture may sit at a fractional position: the offset is taken from that point.
    """
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    img = driver.find_element(By.CSS_SELECTOR, '#picture img')
    left, top, width, height, natural_w, natural_h = driver.execute_script(
        'const r = arguments[0].getBoundingClientRect(); '
        'return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth, arguments[0].naturalHeight];', img)
    at_x, at_y = left + (x + 0.5) * width / natural_w, top + (y + 0.5) * height / natural_h
    centre_x, centre_y = int(left + width / 2), int(top + height / 2)
    ActionChains(driver).move_to_element_with_offset(
        img, int(round(at_x - centre_x)), int(round(at_y - centre_y))).click().perform()


def shown_picture(driver):
    """The picture the page shows, read back from its <img> (uint8 [H, W, 3]): a data: URL, no file."""
    from selenium.webdriver.common.by import By
    return data_url_picture(driver.find_element(By.CSS_SELECTOR, '#picture img').get_attribute('src'))


def downloaded(driver, button_id, name, timeout=30):
    from selenium.webdriver.common.by import By
    path = os.path.join(driver.downloads, name)
    if os.path.exists(path):
        os.remove(path)
    driver.find_element(By.ID, button_id).click()
    wait_for(driver, lambda d: os.path.exists(path) and not os.path.exists(path + '.crdownload'),
             'download of %s' % name, timeout)
    return path


@pytest.fixture(scope='module')
def hinted_page(server, browser, photo):
    """The page with the cat uploaded and two hints clicked (green at A, blue at B): (driver, before, after)."""
    from selenium.webdriver.common.by import By
    url, _ = server
    browser.get(url)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#upload-photo input[type=file], '
                                                 'input[data-testid="Upload a photo-upload-button"]'),
             'the page loads')
    browser.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]').send_keys(photo)
    wait_for(browser, lambda d: 'cat.png' in status_text(d), 'the photo is colorized')
    before = shown_picture(browser)
    set_hint_size(browser, HINT_SIZE)
    for count, (point, colour) in enumerate(((POINT_A, GREEN), (POINT_B, BLUE)), 1):
        set_colour(browser, colour)
        click_photo_pixel(browser, *point)
        wait_for(browser, lambda d: '%d hint%s,' % (count, '' if count == 1 else 's') in status_text(d),
                 'hint %d is placed' % count)
    return browser, before, shown_picture(browser)


@pytest.mark.browser
def test_browser_two_clicks_colour_their_points(hinted_page):
    driver, before, after = hinted_page
    assert after.shape == before.shape == (240, 320, 3)
    for (x, y), colour in ((POINT_A, GREEN), (POINT_B, BLUE)):
        hue, chroma = hue_chroma(ring_mean(after, x, y, 10, 16))   # outside the dot, inside the square
        assert chroma > 0.1 and hue_distance(hue, hex_hue(colour)) < 0.06, (colour, hue, chroma)
    # the dots are drawn in their hints' colours
    for (x, y), colour in ((POINT_A, GREEN), (POINT_B, BLUE)):
        assert hue_distance(hue_chroma(after[y, x])[0], hex_hue(colour)) < 0.03


@pytest.mark.browser
def test_browser_downloads_reproduce_with_colorize_py(hinted_page, app_hint_model, photo, tmp_path):
    driver, _, _ = hinted_page
    png = downloaded(driver, 'download-png', 'cat.png')
    hints_file = downloaded(driver, 'download-hints', 'cat.json')
    points = json.load(open(hints_file))['points']
    assert [(p['x'], p['y'], p['color']) for p in points] == [POINT_A + (GREEN,), POINT_B + (BLUE,)]
    assert colorize.main(['-m', app_hint_model, '--device', 'cpu', '--hints', hints_file, '-o', str(tmp_path),
                          photo]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / 'cat.png')))


@pytest.mark.browser
def test_browser_bad_file_is_a_message_and_the_hints_stay(hinted_page, tmp_path):
    from selenium.webdriver.common.by import By
    driver, _, after = hinted_page
    (tmp_path / 'notes.jpg').write_text('this is no photo')
    driver.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]').send_keys(
        str(tmp_path / 'notes.jpg'))
    wait_for(driver, lambda d: 'cannot open notes.jpg' in d.find_element(By.ID, 'error').text, 'the message')
    assert '2 hints,' in status_text(driver)
    np.testing.assert_array_equal(shown_picture(driver), after)
    # and nothing on the page came from anywhere but this server
    outside = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"
                                    ".filter(n => !n.startsWith('http://127.0.0.1:') && !n.startsWith('data:'))")
    assert outside == []


@pytest.mark.browser
def test_browser_palette_pick_recolours_the_last_hint_then_undo_and_clear(hinted_page):
    from selenium.webdriver.common.by import By
    driver, _, after = hinted_page
    swatches = driver.find_elements(By.CSS_SELECTOR, '#palette .swatch')
    assert len(swatches) == app.PALETTE_SIZE
    colour = swatches[-1].get_attribute('data-color')   # the least likely: far from the blue asked for
    swatches[-1].click()
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    wait_for(driver, lambda d: 'rgb(%d, %d, %d)' % rgb in d.find_element(
        By.CSS_SELECTOR, '#hint-color button.dialog-button').get_attribute('style'), 'the picker takes the pick')
    wait_for(driver, lambda d: not np.array_equal(shown_picture(d), after), 'the picture changes')
    picked = shown_picture(driver)
    assert np.abs(picked[POINT_B[1], POINT_B[0]].astype(int) - rgb).max() <= 1   # the last dot: the pick
    yy, xx = np.mgrid[:240, :320]
    around_a = (np.hypot(xx - POINT_A[0], yy - POINT_A[1]) >= 10) & (np.hypot(xx - POINT_A[0], yy - POINT_A[1]) < 16)
    np.testing.assert_array_equal(picked[around_a], after[around_a])   # the first hint's square: as it was
    driver.find_element(By.ID, 'undo').click()
    wait_for(driver, lambda d: '1 hint,' in status_text(d), 'undo')
    driver.find_element(By.ID, 'clear').click()
    wait_for(driver, lambda d: '0 hints,' in status_text(d), 'clear')


@pytest.mark.browser
def test_browser_click_to_new_picture_latency(hinted_page):
    """Five clicks, each timed in Chromium from the mouse button to the new picture painted."""
    import re
    driver = hinted_page[0]
    driver.execute_script(LATENCY_JS)
    count = int(re.search(r'(\d+) hints?,', status_text(driver)).group(1))
    for i, (x, y) in enumerate(((40, 40), (280, 40), (40, 200), (280, 200), (160, 120))):
        click_photo_pixel(driver, x, y)
        wait_for(driver, lambda d: len(d.execute_script('return window.pictureTimes')) > i, 'picture %d' % (i + 1))
        placed = '%d hint%s,' % (count + i + 1, '' if count + i + 1 == 1 else 's')
        wait_for(driver, lambda d: placed in status_text(d), 'hint %d placed' % (i + 1))
    seconds = [painted for _, painted in driver.execute_script('return window.pictureTimes')]
    print('browser: click -> new picture painted in %s s (median %.2f s; 320 x 240, tiny model)'
          % (', '.join('%.2f' % s for s in seconds), float(np.median(seconds))))
    assert len(seconds) == 5 and all(0 < s < 30 for s in seconds) and float(np.median(seconds)) < 10


def two_flat_regions(path, size=PHOTO_SIZE):
    """A photo of a darker left half and a lighter right half, each flat, in a faint warm tone."""
    width, height = size
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, :width // 2] = (110, 100, 95)
    rgb[:, width // 2:] = (190, 180, 175)
    Image.fromarray(rgb).save(path)
    return str(path)


@pytest.mark.browser
def test_browser_a_click_recolours_its_flat_region_far_from_the_click(hinted_page, tmp_path):
    """Issue 25: one blue click in the left half turns pixels of the left half blue 100 px away (far
    outside the hint's square); the blue does not cross the sharp edge into the right half."""
    from selenium.webdriver.common.by import By
    driver = hinted_page[0]
    driver.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]').send_keys(
        two_flat_regions(tmp_path / 'halves.png'))
    wait_for(driver, lambda d: 'halves.png' in status_text(d) and '0 hints' in status_text(d), 'the photo is open')
    before = shown_picture(driver)
    set_hint_size(driver, 9)
    set_colour(driver, BLUE)
    click_photo_pixel(driver, 40, 120)
    wait_for(driver, lambda d: '1 hint,' in status_text(d), 'the hint is placed')
    after = shown_picture(driver)
    far = ring_mean(after, 140, 120, 0, 10)            # 100 px right of the click, still in the left half
    hue, chroma = hue_chroma(far)
    assert chroma > 0.08 and hue_distance(hue, hex_hue(BLUE)) < 0.08, (hue, chroma)
    assert hue_distance(hue_chroma(ring_mean(before, 140, 120, 0, 10))[0], hex_hue(BLUE)) > 0.15
    hue, chroma = hue_chroma(ring_mean(after, 260, 120, 0, 30))   # the right half
    assert chroma < 0.03 or hue_distance(hue, hex_hue(BLUE)) > 0.15, (hue, chroma)
