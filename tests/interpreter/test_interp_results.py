"""Rich results through the official SDK: main result vs display() calls, every MIME field the SDK
knows, matplotlib charts (PNG + e2b/chart parsed into the SDK's chart classes), pandas DataFrames
(e2b/data), PIL images."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from datetime import datetime

import pytest
from e2b_code_interpreter import Result
from e2b_code_interpreter.charts import (
    BarChart,
    BoxAndWhiskerChart,
    Chart,
    ChartType,
    LineChart,
    PieChart,
    ScaleType,
    ScatterChart,
    SuperChart,
)
from interp_support import display_results, main_results, ok, png_bytes, stderr


@pytest.fixture(scope="module")
def plots(sandbox):
    """A context for matplotlib tests (pyplot imported once)."""
    context = sandbox.create_code_context()
    ok(sandbox.run_code("import matplotlib\nimport matplotlib.pyplot as plt", context=context, timeout=120))
    yield context
    sandbox.remove_code_context(context)


def png_size(png: bytes) -> tuple[int, int]:
    assert png[12:16] == b"IHDR", png[:32]
    return struct.unpack(">II", png[16:24])


def only_result(execution) -> Result:
    ok(execution)
    assert len(execution.results) == 1, execution.results
    return execution.results[0]


# ---- main result and displays -------------------------------------------------------------------


def test_last_expression_is_the_main_result(sandbox, ctx):
    execution = ok(sandbox.run_code("a = 6\na * 7", context=ctx))
    result = only_result(execution)
    assert result.is_main_result is True
    assert result.text == "42" and execution.text == "42"
    assert result.formats() == ["text"]
    assert result.extra in ({}, None)


def test_string_result_loses_one_pair_of_quotes(sandbox, ctx):
    assert ok(sandbox.run_code("'hello'", context=ctx)).text == "hello"
    assert ok(sandbox.run_code('"it\'s"', context=ctx)).text == '"it\'s"'  # repr uses double quotes here


def test_no_result_without_a_trailing_expression(sandbox, ctx):
    for code in ("x = 1", "x = 1;", "print(1)", "None", "1;"):
        execution = ok(sandbox.run_code(code, context=ctx))
        assert main_results(execution) == [], (code, execution.results)
        assert execution.text is None


def test_displays_are_non_main_results_in_order(sandbox, ctx):
    seen = []
    execution = ok(sandbox.run_code(
        "display('first')\ndisplay(2)\nprint('between')\ndisplay([3])\n'main'", context=ctx, on_result=seen.append))
    assert [r.text for r in execution.results] == ["first", "2", "[3]", "main"]
    assert [r.is_main_result for r in execution.results] == [False, False, False, True]
    assert execution.text == "main"
    assert seen == execution.results


def test_latex_only(sandbox, ctx):
    result = only_result(sandbox.run_code(
        "from IPython.display import Latex\ndisplay(Latex(r'$\\frac{a}{b}$'))", context=ctx))
    assert result.latex == r"$\frac{a}{b}$"
    assert "latex" in result.formats()
    assert result.is_main_result is False
    assert result.html is None and result.png is None and result.json is None


@pytest.mark.parametrize(("expr", "field", "expected"), [
    ("Markdown('# Title\\n*em*')", "markdown", "# Title\n*em*"),
    ("HTML('<b>bold</b>')", "html", "<b>bold</b>"),
    ("SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"><circle r=\"1\"/></svg>')", "svg",
     '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><circle r="1"/></svg>'),
    ("Javascript('console.log(\"hi\")')", "javascript", 'console.log("hi")'),
])
def test_display_formats(sandbox, ctx, expr, field, expected):
    execution = ok(sandbox.run_code(
        f"from IPython.display import Markdown, HTML, SVG, Javascript\ndisplay({expr})", context=ctx))
    result = only_result(execution)
    assert getattr(result, field) == expected, result
    assert field in result.formats()
    assert result.is_main_result is False


@pytest.mark.parametrize(("code", "field", "magic"), [
    # a real JPEG from PIL, displayed through IPython's Image
    ("from PIL import Image as P\nimport io\nbuf = io.BytesIO()\nP.new('RGB', (5, 3), (0, 200, 0)).save(buf, 'JPEG')\n"
     "from IPython.display import Image\nraw = buf.getvalue()\ndisplay(Image(data=raw, format='jpeg'))",
     "jpeg", b"\xff\xd8\xff"),
    # a real PDF from matplotlib, through an object's _repr_pdf_
    ("import io\nimport matplotlib.pyplot as plt\nfig = plt.figure()\nplt.plot([1, 2])\nbuf = io.BytesIO()\n"
     "fig.savefig(buf, format='pdf')\nplt.close(fig)\nraw = buf.getvalue()\n"
     "class Doc:\n    def _repr_pdf_(self):\n        return raw\n    def __repr__(self):\n        return 'Doc()'\n"
     "display(Doc())", "pdf", b"%PDF-"),
])
def test_binary_display_formats(sandbox, ctx, code, field, magic):
    result = only_result(sandbox.run_code(code, context=ctx, timeout=120))
    data = base64.b64decode(getattr(result, field), validate=True)
    assert data.startswith(magic), data[:16]
    assert field in result.formats() and result.is_main_result is False
    assert result.png is None  # the form the kernel produced, no other
    # exactly the bytes the kernel had
    digest = ok(sandbox.run_code("import hashlib; hashlib.sha256(raw).hexdigest()", context=ctx)).text
    assert digest == hashlib.sha256(data).hexdigest()


def test_json_display_is_a_dict(sandbox, ctx):
    result = only_result(sandbox.run_code(
        "from IPython.display import JSON\nJSON({'name': 'x', 'items': [1, 2.5, None, True], 'nested': {'k': 'v'}})",
        context=ctx))
    assert result.is_main_result is True
    assert result.json == {"name": "x", "items": [1, 2.5, None, True], "nested": {"k": "v"}}
    assert "json" in result.formats()


def test_several_formats_in_one_result(sandbox, ctx):
    result = only_result(sandbox.run_code(
        "class Rich:\n"
        "    def _repr_html_(self): return '<i>rich</i>'\n"
        "    def _repr_markdown_(self): return '*rich*'\n"
        "    def _repr_latex_(self): return '$rich$'\n"
        "    def __repr__(self): return 'Rich()'\n"
        "Rich()", context=ctx))
    assert (result.text, result.html, result.markdown, result.latex) == ("Rich()", "<i>rich</i>", "*rich*", "$rich$")
    assert set(result.formats()) >= {"text", "html", "markdown", "latex"}


def test_unknown_mime_types_go_to_extra(sandbox, ctx):
    result = only_result(sandbox.run_code(
        "display({'application/vnd.custom+json': {'a': 1}, 'text/x-note': 'n', 'text/plain': 'plain'}, raw=True)",
        context=ctx))
    assert result.text == "plain"
    assert result.extra == {"application/vnd.custom+json": {"a": 1}, "text/x-note": "n"}
    assert {"application/vnd.custom+json", "text/x-note"} <= set(result.formats())


def test_execution_to_json(sandbox, ctx):
    execution = ok(sandbox.run_code("print('p')\ndisplay(1)\n2", context=ctx))
    data = json.loads(execution.to_json())
    assert [r["text"] for r in data["results"]] == ["1", "2"]
    assert json.loads(data["logs"]) == {"stdout": ["p\n"], "stderr": []}
    assert data["error"] is None


# ---- matplotlib ---------------------------------------------------------------------------------


def chart_result(execution, main: bool | None = None) -> Result:
    ok(execution)
    charts = [r for r in execution.results if r.chart is not None and (main is None or r.is_main_result == main)]
    assert charts, execution.results
    return charts[0]


def test_line_chart_with_show(sandbox, plots):
    execution = sandbox.run_code(
        "plt.figure()\n"
        "plt.plot([1, 2, 3], [4, 5, 6], label='up')\n"
        "plt.plot([1, 2, 3], [3, 2, 1], label='down')\n"
        "plt.title('Line title'); plt.xlabel('Time (s)'); plt.ylabel('Speed [m/s]'); plt.legend()\n"
        "plt.show()", context=plots)
    result = only_result(execution)
    assert result.is_main_result is False  # plt.show() displays, it is not the cell's value
    png = png_bytes(result.png)
    assert len(png) > 1000
    assert result.text.startswith("<Figure")
    assert {"text", "png", "chart"} <= set(result.formats())
    chart = result.chart
    assert isinstance(chart, LineChart) and chart.type == ChartType.LINE
    assert chart.title == "Line title"
    assert (chart.x_label, chart.y_label) == ("Time (s)", "Speed [m/s]")
    assert (chart.x_unit, chart.y_unit) == ("s", "m/s")
    assert chart.x_scale == ScaleType.LINEAR and chart.y_scale == ScaleType.LINEAR
    assert [e.label for e in chart.elements] == ["up", "down"]
    assert chart.elements[0].points == [(1, 4), (2, 5), (3, 6)]
    assert chart.elements[1].points == [(1, 3), (2, 2), (3, 1)]
    assert len(chart.x_ticks) == len(chart.x_tick_labels) > 0
    # the figure was shown and closed: the next cell shows nothing
    assert ok(sandbox.run_code("1", context=plots)).results[0].chart is None


def test_figure_as_last_expression(sandbox, plots):
    execution = sandbox.run_code(
        "fig, ax = plt.subplots()\nax.bar(['a', 'b', 'c'], [3, 1, 2])\nax.set_title('Bars')\n"
        "ax.set_xlabel('letter'); ax.set_ylabel('count')\nfig", context=plots)
    result = chart_result(execution, main=True)
    png_bytes(result.png)
    chart = result.chart
    assert isinstance(chart, BarChart) and chart.type == ChartType.BAR
    assert chart.title == "Bars"
    assert (chart.x_label, chart.y_label) == ("letter", "count")
    assert [e.label for e in chart.elements] == ["a", "b", "c"]
    assert [e.value for e in chart.elements] == [3, 1, 2]
    assert all(isinstance(e.group, str) for e in chart.elements)


def test_scatter_chart(sandbox, plots):
    result = chart_result(sandbox.run_code(
        "plt.figure()\nplt.scatter([1, 2, 3], [9, 4, 1], label='pts')\nplt.scatter([5], [5], label='one')\nplt.show()",
        context=plots))
    chart = result.chart
    assert isinstance(chart, ScatterChart) and chart.type == ChartType.SCATTER
    assert [e.label for e in chart.elements] == ["pts", "one"]
    assert chart.elements[0].points == [(1, 9), (2, 4), (3, 1)]
    assert chart.elements[1].points == [(5, 5)]


def test_pie_chart(sandbox, plots):
    result = chart_result(sandbox.run_code(
        "plt.figure()\nplt.pie([1, 2, 3], labels=['p', 'q', 'r'])\nplt.title('Pie')\nplt.show()", context=plots))
    chart = result.chart
    assert isinstance(chart, PieChart) and chart.type == ChartType.PIE
    assert chart.title == "Pie"
    assert [e.label for e in chart.elements] == ["p", "q", "r"]
    assert [round(e.angle, 3) for e in chart.elements] == [60, 120, 180]
    assert all(e.radius == 1 for e in chart.elements)


def test_box_and_whisker_chart(sandbox, plots):
    result = chart_result(sandbox.run_code(
        "fig, ax = plt.subplots()\n"
        "ax.boxplot([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7, 40]], tick_labels=['g', 'h'], patch_artist=True)\n"
        "ax.set_title('Box'); ax.set_xlabel('group'); ax.set_ylabel('value')\nplt.show()", context=plots))
    chart = result.chart
    assert isinstance(chart, BoxAndWhiskerChart) and chart.type == ChartType.BOX_AND_WHISKER
    assert chart.title == "Box" and (chart.x_label, chart.y_label) == ("group", "value")
    g, h = chart.elements
    assert (g.label, g.min, g.first_quartile, g.median, g.third_quartile, g.max) == ("g", 1, 2, 3, 4, 5)
    assert g.outliers == []
    assert (h.label, h.min, h.median, h.max) == ("h", 2, 5, 7)
    assert h.outliers == [40]


def test_a_default_box_plot_is_read_as_one(sandbox, plots):
    # no patch_artist: matplotlib draws each box as a closed line, which e2b_charts alone calls a
    # line chart; next to a line plot in the same figure, each axes keeps its own type
    result = chart_result(sandbox.run_code(
        "fig, (box, line) = plt.subplots(1, 2)\n"
        "box.boxplot([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7, 40]], tick_labels=['g', 'h'])\n"
        "box.set_title('Box')\n"
        "line.plot([0, 1, 1, 0, 0], [0, 0, 1, 1, 0]); line.set_title('Square')\nplt.show()", context=plots))
    chart = result.chart
    assert isinstance(chart, SuperChart)
    box, line = chart.elements
    assert isinstance(box, BoxAndWhiskerChart) and box.title == "Box"
    g, h = box.elements
    assert (g.label, g.min, g.first_quartile, g.median, g.third_quartile, g.max) == ("g", 1, 2, 3, 4, 5)
    assert (h.label, h.min, h.median, h.max, h.outliers) == ("h", 2, 5, 7, [40])
    # a closed square without a median across it is what it looks like: a line
    assert isinstance(line, LineChart) and line.title == "Square"


def test_subplots_make_a_superchart(sandbox, plots):
    result = chart_result(sandbox.run_code(
        "fig, (left, right) = plt.subplots(1, 2)\n"
        "left.plot([1, 2], [3, 4]); left.set_title('L')\n"
        "right.bar(['x', 'y'], [1, 2]); right.set_title('R')\n"
        "fig.suptitle('Both')\nplt.show()", context=plots))
    chart = result.chart
    assert isinstance(chart, SuperChart) and chart.type == ChartType.SUPERCHART
    assert chart.title == "Both"
    assert [type(c) for c in chart.elements] == [LineChart, BarChart]
    assert [c.title for c in chart.elements] == ["L", "R"]
    assert chart.elements[0].elements[0].points == [(1, 3), (2, 4)]
    assert [e.value for e in chart.elements[1].elements] == [1, 2]


def test_several_figures_in_one_cell(sandbox, plots):
    execution = ok(sandbox.run_code(
        "for i in range(3):\n    plt.figure()\n    plt.plot([0, 1], [0, i])\n    plt.title(f'fig {i}')\n    plt.show()",
        context=plots))
    assert [r.chart.title for r in execution.results] == ["fig 0", "fig 1", "fig 2"]
    for r in execution.results:
        png_bytes(r.png)


def test_chart_extraction_writes_nothing_to_stderr(sandbox, plots):
    # integer ticks (set_xticks, tick labels of box plots) are numpy ints: the chart extraction
    # must not leak its serialisation warnings into the user's output
    execution = ok(sandbox.run_code(
        "import warnings\nwarnings.simplefilter('default')\n"
        "fig, ax = plt.subplots()\nax.plot([1, 2, 3], [1, 4, 9])\nax.set_xticks([1, 2, 3])\nplt.show()",
        context=plots))
    assert stderr(execution) == "", execution.logs.stderr
    assert isinstance(execution.results[0].chart, LineChart)


def test_unreadable_figure_still_gives_a_png(sandbox, plots):
    # an image plot is not a chart e2b_charts knows: no crash, the PNG is there, the chart says "unknown"
    execution = ok(sandbox.run_code(
        "import numpy as np\nplt.figure()\nplt.imshow(np.arange(16).reshape(4, 4))\nplt.title('img')\nplt.show()",
        context=plots))
    assert len(execution.results) == 1
    png_bytes(execution.results[0].png)
    chart = execution.results[0].chart
    assert type(chart) is Chart and chart.type == ChartType.UNKNOWN
    assert (chart.title, chart.elements) == ("img", [])


def test_log_scales(sandbox, plots):
    chart = chart_result(sandbox.run_code(
        "plt.figure()\nplt.plot([1, 10, 100], [1, 100, 10000], label='pow')\nplt.xscale('log'); plt.yscale('log')\n"
        "plt.xlabel('x (log)'); plt.show()", context=plots)).chart
    assert isinstance(chart, LineChart)
    assert (chart.x_scale, chart.y_scale) == (ScaleType.LOG, ScaleType.LOG)
    assert chart.elements[0].points == [(1, 1), (10, 100), (100, 10000)]
    assert chart.x_label == "x (log)"
    assert all(t > 0 for t in chart.x_ticks) and len(chart.x_ticks) == len(chart.x_tick_labels)
    # one log axis, one linear
    chart = chart_result(sandbox.run_code(
        "plt.figure()\nplt.plot([1, 2, 3], [10, 1000, 100000])\nplt.yscale('log')\nplt.show()", context=plots)).chart
    assert (chart.x_scale, chart.y_scale) == (ScaleType.LINEAR, ScaleType.LOG)


def test_savefig_writes_a_real_png(sandbox, plots):
    ok(sandbox.run_code(
        "fig = plt.figure(); plt.plot([1, 2]); fig.savefig('/tmp/interp_plot.png'); plt.close(fig)", context=plots))
    data = sandbox.files.read("/tmp/interp_plot.png", format="bytes")
    assert bytes(data).startswith(b"\x89PNG\r\n\x1a\n")


# ---- pandas -------------------------------------------------------------------------------------


def test_dataframe_data(sandbox, ctx):
    result = only_result(sandbox.run_code(
        "import pandas as pd\npd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z'], 'c': [0.5, 1.5, 2.5]})",
        context=ctx, timeout=120))
    assert result.is_main_result is True
    assert result.data == {"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, 2.5]}
    assert "<table" in result.html and "dataframe" in result.html
    assert result.text.split("\n")[0].split() == ["a", "b", "c"]
    assert {"text", "html", "data"} <= set(result.formats())


def test_dataframe_with_datetimes_and_missing_values(sandbox, ctx):
    result = only_result(sandbox.run_code(
        "import pandas as pd, numpy as np\n"
        "pd.DataFrame({'when': pd.to_datetime(['2024-01-02 00:00:00', '2024-03-04 05:06:07']),\n"
        "              'value': [1.5, np.nan], 'label': [None, 'k'], 'count': [1, 2]})",
        context=ctx, timeout=120))
    data = result.data
    assert list(data) == ["when", "value", "label", "count"]
    # datetimes: ISO-8601 strings of the same instants
    assert [datetime.fromisoformat(v) for v in data["when"]] == [datetime(2024, 1, 2), datetime(2024, 3, 4, 5, 6, 7)]
    # missing values: JSON null (never NaN, which is not JSON)
    assert data["value"] == [1.5, None]
    assert data["label"] == [None, "k"]
    assert data["count"] == [1, 2]
    assert "NaN" in result.text


def test_dataframe_displayed_and_empty(sandbox, ctx):
    execution = ok(sandbox.run_code(
        "import pandas as pd\ndisplay(pd.DataFrame({'k': ['v']}))\npd.DataFrame({'empty': []})",
        context=ctx, timeout=120))
    shown, main = execution.results
    assert (shown.is_main_result, shown.data) == (False, {"k": ["v"]})
    assert (main.is_main_result, main.data) == (True, {"empty": []})


def test_series_and_plain_values_have_no_data(sandbox, ctx):
    execution = ok(sandbox.run_code("import pandas as pd\npd.Series([1, 2])", context=ctx, timeout=120))
    assert execution.results[0].data is None
    assert execution.results[0].text


# ---- PIL ----------------------------------------------------------------------------------------


def test_pil_image_as_last_expression(sandbox, ctx):
    result = only_result(sandbox.run_code(
        "from PIL import Image\nimg = Image.new('RGB', (16, 8), (255, 0, 0))\nimg", context=ctx))
    assert result.is_main_result is True
    assert png_size(png_bytes(result.png)) == (16, 8)
    # the pixels, decoded in the sandbox from the PNG the client got
    execution = ok(sandbox.run_code(
        f"import base64, io\nImage.open(io.BytesIO(base64.b64decode({result.png!r}))).convert('RGB').getpixel((3, 3))",
        context=ctx))
    assert execution.text == "(255, 0, 0)"


def test_pil_display_and_show(sandbox, ctx):
    execution = ok(sandbox.run_code(
        "from PIL import Image\nimg = Image.new('L', (4, 4), 128)\ndisplay(img)\nimg.show()", context=ctx))
    assert len(execution.results) == 2, execution.results
    assert display_results(execution) == execution.results
    for r in execution.results:
        png_bytes(r.png)
    assert execution.logs.stderr == []
