"""Every explain format through a real renderer: pdflatex for the LaTeX document and for the
Markdown's mathematics, and headless Chromium (Debian's, driven by selenium) for the HTML page.

.ci/run installs Debian's chromium, chromium-driver and texlive-latex-base; in CI a missing tool is
a failure, elsewhere these tests are skipped with the command that installs it.
"""

import io
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from convgrad.explain import explain

CONFIGS = [dict(input_size=4, kernel_size=2), dict(input_size="4x4", kernel_size="2x2", padding=1),
           dict(input_size="5x6", kernel_size="3x2", stride=(2, 1), padding=((1, 0), 1), dilation=(1, 2))]
INSTALL = "apt-get install chromium chromium-driver texlive-latex-base"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: .ci/run installs it ({INSTALL})")
        pytest.skip(f"{tool} is not installed here ({INSTALL})")
    return path


def compile_latex(source: str, directory: pathlib.Path) -> subprocess.CompletedProcess:
    (directory / "doc.tex").write_text(source, encoding="utf-8")
    return subprocess.run([require("pdflatex"), "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=directory, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_latex_compiles(config, tmp_path):
    result = compile_latex(explain(**config, format="latex"), tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    assert "Warning" not in re.sub(r"LaTeX Font Warning.*", "", result.stdout)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_markdown_mathematics_compiles(config, tmp_path):
    markdown = explain(**config, format="markdown")
    blocks = re.findall(r"\$\$\n(.*?)\n\$\$", markdown, flags=re.S)
    assert blocks
    document = ("\\documentclass{article}\n\\usepackage{amsmath}\n\\setcounter{MaxMatrixCols}{30}\n\\begin{document}\n"
                + "\n".join(f"\\[\n{b}\n\\]" for b in blocks) + "\n\\end{document}\n")
    result = compile_latex(document, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = require("chromium"), require("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_html_renders_in_a_real_browser(config, tmp_path, browser):
    page = explain(**config, format="html")
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    browser.get(path.as_uri())
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert browser.title.startswith("Convolution of a")
    maths = browser.find_elements("tag name", "math")
    assert len(maths) >= 8
    assert browser.find_elements("tag name", "mfrac") and browser.find_elements("tag name", "mtable")
    heights = [m.size["height"] for m in maths]
    assert min(heights) > 10  # MathML is laid out (an unsupported element would collapse)
    assert "Verified" in browser.find_element("css selector", "p.verified").text
    from matplotlib import image

    pixels = image.imread(io.BytesIO(browser.get_screenshot_as_png()), format="png")
    assert pixels.std() > 0.05  # not a blank page
    dark = (pixels[..., :3].mean(axis=-1) < 0.5).mean()
    assert 0.01 < dark < 0.5  # text on a light background
