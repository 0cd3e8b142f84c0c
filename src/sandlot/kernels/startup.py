# Run in every python context's kernel at start (IPKernelApp.exec_files), in the user's namespace:
# everything lives inside one function that deletes itself, so the namespace stays clean.
#
# It adds E2B's two extra display formats, both registered by type *name* so that neither pandas
# nor matplotlib is imported before the user's code does (a kernel starts ~0.5 s faster):
#   e2b/data   a pandas DataFrame as {column: [values...]}
#   e2b/chart  a matplotlib figure described as data (e2b_charts: type, title, axes, elements)
# and makes PIL's Image.show() display the image instead of looking for a viewer. It also trims
# ipykernel's messaging per run to what the driver reads (see the end).


def _sandlot_startup():
    import importlib.util
    import json
    import sys
    import warnings

    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    ip = get_ipython()

    def columns(df):
        split = json.loads(df.to_json(orient="split", date_format="iso", default_handler=str))
        columns = [str(c) for c in split["columns"]]
        return {c: [row[i] for row in split["data"]] for i, c in enumerate(columns)}

    def boxplot_view(ax):
        """An axes as e2b_charts reads a box plot, if `ax` holds a default one (patch_artist=False,
        not notched), or None. e2b_charts finds boxes only among patches; a default box plot draws
        each box as a closed 5-point line, which it would call a line chart."""
        from matplotlib.lines import Line2D
        from matplotlib.patches import PathPatch
        from matplotlib.path import Path
        from matplotlib.text import Text

        if not all(isinstance(c, Line2D) for c in ax._children if not isinstance(c, Text)):
            return None
        boxes, rest = [], []
        for line in ax.lines:
            xy = line.get_xydata()
            if len(xy) == 5 and (xy[0] == xy[-1]).all() and len(set(xy[:, 0])) == len(set(xy[:, 1])) == 2:
                boxes.append(xy)
            elif len(xy) == 2 or line.get_linestyle() in ("None", "none", " ", ""):
                rest.append(line)  # whiskers, caps, medians; fliers are markers only
            else:
                return None

        def has_median(box):  # a segment across the box from side to side: what a plain square lacks
            (x0, y0), (x1, y1) = box.min(axis=0), box.max(axis=0)
            for xy in (line.get_xydata() for line in rest):
                if len(xy) != 2:
                    continue
                (sx0, sy0), (sx1, sy1) = xy.min(axis=0), xy.max(axis=0)
                if (sx0, sx1) == (x0, x1) and sy0 == sy1 and y0 <= sy0 <= y1 \
                        or (sy0, sy1) == (y0, y1) and sx0 == sx1 and x0 <= sx0 <= x1:
                    return True
            return False

        if not boxes or not all(has_median(box) for box in boxes):
            return None
        boxes = [PathPatch(Path(box)) for box in boxes]

        class View:
            patches, lines = boxes, rest

            def __getattr__(self, name):
                return getattr(ax, name)

        return View()

    def chart(figure):
        try:
            from e2b_charts import main as charts
        except ImportError:
            return None

        def of_axes(ax):
            view = boxplot_view(ax)
            return charts.BoxAndWhiskerChart(ax=view) if view is not None else charts.get_chart_from_ax(ax)

        try:
            # e2b_charts trips over numpy ticks (pydantic serializer warnings) and deprecated
            # matplotlib attributes: its warnings are not the user's output
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # charts.chart_figure_to_dict, with default box plots read as box plots
                axes = figure.get_axes()
                if not axes or charts.is_figure_blank(axes):
                    return {}
                if len(axes) == 1:
                    return of_axes(axes[0]).model_dump()
                whole = charts.SuperChart(figure=figure)
                whole.elements = [of_axes(ax) for ax in axes]
                return whole.model_dump()
        except Exception:  # a figure e2b_charts cannot read still displays as an image
            return None

    class DataFormatter(BaseFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")
        _return_type = (dict,)

    class ChartFormatter(BaseFormatter):
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")
        _return_type = (dict,)

        def __call__(self, obj):
            # not a registered printer: matplotlib's inline backend pops every Figure printer
            # from every formatter when it is set up
            figure = sys.modules.get("matplotlib.figure")
            if figure is not None and isinstance(obj, figure.Figure):
                return chart(obj)
            return super().__call__(obj)

    data = DataFormatter(parent=ip.display_formatter)
    for module in ("pandas", "pandas.core.frame"):  # pandas 3 says "pandas", older ones the latter
        data.for_type_by_name(module, "DataFrame", columns)
    charts = ChartFormatter(parent=ip.display_formatter)
    ip.display_formatter.formatters["e2b/data"] = data
    ip.display_formatter.formatters["e2b/chart"] = charts

    class ShowImagesInline:
        """Patches PIL.ImageShow as it is first imported (no screen here): image.show() displays
        the image as a result instead of looking for a viewer program."""

        def find_spec(self, name, path, target=None):
            if name != "PIL.ImageShow":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)

                def show(image, title=None, **options):
                    from IPython.display import display

                    display(image)
                    return True

                module.show = show

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, ShowImagesInline())

    # ipykernel flushes stdout and stderr four times per run, each a round trip to its IOPub
    # thread (~0.3 ms apiece here) even when nothing was written: skip the trip when the stream
    # holds nothing. Data written later is flushed as before (by the next flush or its timer).
    # Before that, output written to fd 1 or 2 directly (os.write, C code, which a thread per
    # stream moves from a pipe into the stream) is waited for, so it belongs to the run that wrote
    # it; ipykernel sleeps 0.5 ms per run for that instead (_execute_sleep, off: see spawn.py).
    try:
        import fcntl
        import os
        import termios
        import time

        from ipykernel.iostream import OutStream

        flush = OutStream.flush

        def settle(stream, limit=0.05):
            """Return once the stream's pipe is empty and its watcher thread waits in read() on it
            (so it holds nothing either), or after `limit` seconds."""
            fid, thread = getattr(stream, "_fid", None), getattr(stream, "watch_fd_thread", None)
            if fid is None or thread is None or not thread.is_alive():
                return
            state = getattr(stream, "_sl_syscall", None)
            if state is None:  # the watcher's current syscall: "0 0x<fd> ..." while in read(fd)
                state = stream._sl_syscall = os.open("/proc/self/task/%d/syscall" % thread.native_id, os.O_RDONLY)
            reading, pending = b"0 %s " % hex(fid).encode(), bytearray(4)
            deadline = time.monotonic() + limit
            while True:
                fcntl.ioctl(fid, termios.FIONREAD, pending)
                if not any(pending) and os.pread(state, 64, 0).startswith(reading):
                    return
                if time.monotonic() > deadline:
                    return
                time.sleep(0.0001)  # lets the watcher take the GIL

        def flush_if_pending(self):
            try:
                settle(self)
            except OSError:
                pass
            if self._buffers or self.echo is not None:
                flush(self)

        if hasattr(OutStream, "_buffers") or "_buffers" in OutStream.__init__.__code__.co_names:
            OutStream.flush = flush_if_pending
    except Exception:
        pass

    # Two IOPub messages per run that only the driver reads, and does not need: "busy" (it waits for
    # "idle") and execute_input (it knows the execution count ahead and checks it against the
    # reply). Each is a hop to the IOPub thread and a message to parse: ~0.5 ms of a 1+1 together.
    try:
        from ipykernel.kernelbase import Kernel

        publish_status = Kernel._publish_status

        def publish_all_but_busy(self, status, *args, **kwargs):
            if status != "busy":
                publish_status(self, status, *args, **kwargs)

        Kernel._publish_status = publish_all_but_busy
        Kernel._publish_execute_input = lambda self, *args, **kwargs: None
    except Exception:
        pass

_sandlot_startup()
del _sandlot_startup
