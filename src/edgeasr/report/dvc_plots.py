"""`dvc plots show|diff` pages that open offline.

DVC's HTML loads vega, vega-lite and vega-embed from a CDN and is blank without network. This runs
DVC with an HTML template whose only script is vl-convert's bundle of those libraries, inlined (the
template has no `{scripts}` placeholder, so DVC adds no CDN tags):

    python -m edgeasr.report.dvc_plots show -o dvc_plots
    python -m edgeasr.report.dvc_plots diff HEAD~1 -o dvc_plots
"""

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import vl_convert

TEMPLATE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>edgeasr plots</title>
<script>{bundle}</script>
<style>table {{ border-spacing: 15px; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def offline_template() -> str:
    """DVC's page with vega-embed, vega-lite and vega inlined (window.vegaEmbed etc.)."""
    return TEMPLATE.format(bundle=vl_convert.javascript_bundle()).replace("{{plot_divs}}", "{plot_divs}")


def main(argv: Optional[List[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("show", "diff"):
        sys.exit("usage: python -m edgeasr.report.dvc_plots show|diff [dvc plots arguments]")
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "offline.html"
        template.write_text(offline_template(), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "dvc", "plots", args[0], *args[1:], "--html-template", str(template)],
                       check=True)


if __name__ == "__main__":
    main()
