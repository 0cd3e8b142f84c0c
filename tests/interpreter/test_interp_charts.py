"""Box-and-whisker charts and images, through the official SDK's models: what E2B's tests ask of
them (graphs/test_box_and_whiskers.py, images/test_images.py) and the box plots they do not
cover: default ones (drawn as lines), notched, horizontal, outliers, pandas', several axes."""

from __future__ import annotations

import pytest
from e2b_code_interpreter.charts import BoxAndWhiskerChart, ChartType, SuperChart
from interp_support import ok, png_bytes, stdout

SCORES = ("import matplotlib.pyplot as plt\n"
          "data = {'Class A': [85, 90, 78, 92, 88], 'Class B': [95, 89, 76, 91, 84, 87],\n"
          "        'Class C': [75, 82, 88, 79, 86]}\n")


@pytest.fixture(scope="module")
def plots(sandbox):
    context = sandbox.create_code_context()
    ok(sandbox.run_code("import matplotlib.pyplot as plt", context=context, timeout=120))
    yield context
    sandbox.remove_code_context(context)


def box_chart(execution) -> BoxAndWhiskerChart:
    ok(execution)
    charts = [r.chart for r in execution.results if r.chart is not None]
    assert len(charts) == 1, execution.results
    assert isinstance(charts[0], BoxAndWhiskerChart) and charts[0].type == ChartType.BOX_AND_WHISKER, charts[0]
    return charts[0]


def summary(chart) -> list[tuple]:
    return [(e.label, e.min, e.first_quartile, e.median, e.third_quartile, e.max, e.outliers) for e in chart.elements]


def test_box_and_whiskers_as_in_e2b_tests(sandbox, plots):
    """E2B's own test: a default box plot and a patch_artist one over it, three boxes."""
    code = SCORES + (
        "fig, ax = plt.subplots(figsize=(10, 6))\n"
        "ax.boxplot(data.values(), tick_labels=data.keys())\n"
        "ax.set_title('Exam Scores Distribution')\n"
        "ax.set_xlabel('Class')\n"
        "ax.set_ylabel('Score')\n"
        "ax.boxplot(data.values(), tick_labels=data.keys(), patch_artist=True)\n"
        "plt.tight_layout()\n"
        "plt.show()\n")
    chart = box_chart(sandbox.run_code(code, context=plots))
    assert chart.title == "Exam Scores Distribution"
    assert (chart.x_label, chart.y_label, chart.x_unit, chart.y_unit) == ("Class", "Score", None, None)
    assert [e.label for e in chart.elements] == ["Class A", "Class B", "Class C"]
    for e in chart.elements:
        assert all(isinstance(v, float) for v in (e.min, e.first_quartile, e.median, e.third_quartile, e.max))
    assert summary(chart)[0] == ("Class A", 78.0, 85.0, 88.0, 90.0, 92.0, [])
    assert summary(chart)[1] == ("Class B", 84.0, 84.75, 88.0, 90.5, 95.0, [76.0])


@pytest.mark.parametrize("options", ["", "patch_artist=True", "notch=True", "showfliers=True, whis=0.2"])
def test_default_and_styled_box_plots(sandbox, plots, options):
    """Whatever its style, a box plot is read from its statistics, outliers (all of them) included."""
    code = ("import numpy as np\n"
            "fig, ax = plt.subplots()\n"
            f"ax.boxplot([[1, 2, 3, 4, 5, 6, 7, 40, 41], [10, 11, 12, 13, 14, -30]], {options})\n"
            "ax.set_title('styled')\n"
            "plt.show()\n")
    chart = box_chart(sandbox.run_code(code, context=plots))
    assert [e.label for e in chart.elements] == ["1", "2"]
    first, second = chart.elements
    assert (first.first_quartile, first.median, first.third_quartile) == (3.0, 5.0, 7.0)
    assert (second.first_quartile, second.median, second.third_quartile) == (10.25, 11.5, 12.75)
    if "whis" not in options:  # matplotlib's default whiskers: 1.5 IQR
        assert (first.min, first.max, first.outliers) == (1.0, 7.0, [40.0, 41.0])
        assert (second.min, second.max, second.outliers) == (10.0, 14.0, [-30.0])
    else:  # shorter whiskers: more outliers, every one of them kept
        assert (first.min, first.max, first.outliers) == (3.0, 7.0, [1.0, 2.0, 40.0, 41.0])
        assert (second.min, second.max, second.outliers) == (10.0, 13.0, [-30.0, 14.0])


def test_horizontal_box_plot(sandbox, plots):
    code = SCORES + (
        "fig, ax = plt.subplots()\n"
        "ax.boxplot(list(data.values()), orientation='horizontal', tick_labels=list(data))\n"
        "ax.set_xlabel('Score (points)')\n"
        "ax.set_ylabel('Class')\n"
        "plt.show()\n")
    chart = box_chart(sandbox.run_code(code, context=plots))
    # as e2b_charts does: x is the axis of the boxes
    assert (chart.x_label, chart.y_label, chart.y_unit) == ("Class", "Score (points)", "points")
    assert [e.label for e in chart.elements] == ["Class A", "Class B", "Class C"]
    assert chart.elements[2].median == 82.0


def test_pandas_box_plot(sandbox, plots):
    code = ("import pandas as pd\n"
            "df = pd.DataFrame({'a': [1, 2, 3, 4, 50], 'b': [2, 3, 4, 5, 6]})\n"
            "ax = df.boxplot()\n"
            "ax.set_title('frame')\n"
            "plt.show()\n")
    chart = box_chart(sandbox.run_code(code, context=plots))
    assert chart.title == "frame"
    assert summary(chart) == [("a", 1.0, 2.0, 3.0, 4.0, 4.0, [50.0]), ("b", 2.0, 3.0, 4.0, 5.0, 6.0, [])]


def test_box_plots_in_several_axes(sandbox, plots):
    code = ("fig, (left, right) = plt.subplots(1, 2)\n"
            "fig.suptitle('two')\n"
            "left.boxplot([[1, 2, 3]])\n"
            "right.plot([1, 2, 3], [3, 2, 1])\n"
            "plt.show()\n")
    execution = ok(sandbox.run_code(code, context=plots))
    chart = next(r.chart for r in execution.results if r.chart is not None)
    assert isinstance(chart, SuperChart) and chart.title == "two"
    assert [c.type for c in chart.elements] == [ChartType.BOX_AND_WHISKER, ChartType.LINE]
    assert chart.elements[0].elements[0].median == 2.0


def test_a_cleared_box_plot_is_not_charted(sandbox, plots):
    code = ("fig, ax = plt.subplots()\n"
            "ax.boxplot([[1, 2, 3]])\n"
            "ax.cla()\n"
            "ax.plot([1, 2], [2, 1])\n"
            "plt.show()\n")
    execution = ok(sandbox.run_code(code, context=plots))
    chart = next(r.chart for r in execution.results if r.chart is not None)
    assert chart.type == ChartType.LINE


def test_a_deprecated_option_warns_at_the_users_line(sandbox, plots):
    """The recording wrapper must not take the blame in matplotlib's warnings."""
    execution = ok(sandbox.run_code("fig, ax = plt.subplots()\nax.boxplot([[1, 2, 3]], vert=False)\nplt.show()",
                                    context=plots))
    warning = "".join(execution.logs.stderr)
    if warning:  # matplotlib >= 3.11 deprecates vert
        assert "startup" not in warning and "ax.boxplot([[1, 2, 3]], vert=False)" in warning, warning


# ---- images (E2B's images/test_images.py) ------------------------------------------------------

IMAGE = ("import numpy\n"
         "from PIL import Image\n"
         "imarray = numpy.random.rand(16, 16, 3) * 255\n"
         "image = Image.fromarray(imarray.astype('uint8')).convert('RGBA')\n")


def test_show_image(sandbox, ctx):
    execution = ok(sandbox.run_code(IMAGE + "image.show()\nprint('Image shown.')", context=ctx))
    assert png_bytes(execution.results[0].png) and stdout(execution) == "Image shown.\n"


def test_image_as_last_command(sandbox, ctx):
    execution = ok(sandbox.run_code(IMAGE + "image", context=ctx))
    assert png_bytes(execution.results[0].png)


def test_get_image_on_save(sandbox, ctx):
    path = "/tmp/saved-by-pil.png"
    execution = ok(sandbox.run_code(IMAGE + f"image.save({path!r})\nprint('Image saved.')", context=ctx))
    assert len(execution.results) == 1 and stdout(execution) == "Image saved.\n"
    shown = png_bytes(execution.results[0].png)
    assert sandbox.files.read(path, format="bytes").startswith(shown[:8])
    # a pathlib path too; saving into a buffer is not a display
    execution = ok(sandbox.run_code(IMAGE + "import io, pathlib\nimage.save(pathlib.Path('/tmp/p.png'))\n"
                                    "image.save(io.BytesIO(), 'PNG')", context=ctx))
    assert len(execution.results) == 1 and png_bytes(execution.results[0].png)
