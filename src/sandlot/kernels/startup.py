# Run in every python context's kernel at start (IPKernelApp.exec_files), in the user's namespace:
# everything lives inside one function that deletes itself, so the namespace stays clean.
#
# It adds E2B's two extra display formats, both registered by type *name* so that neither pandas
# nor matplotlib is imported before the user's code does (a kernel starts ~0.5 s faster):
#   e2b/data   a pandas DataFrame as {column: [values...]}
#   e2b/chart  a matplotlib figure described as data (e2b_charts: type, title, axes, elements)
# It patches modules as the user's code first imports them (PatchOnImport): PIL's Image.show()
# and Image.save() to a file display the image, as E2B's do; matplotlib's box plots keep their
# statistics, from which their chart is made. It also trims ipykernel's messaging per run to what
# the driver reads (see the end).


def _sandlot_startup():
    import functools
    import importlib.util
    import json
    import os
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

    def record_boxes(module):
        """Axes.bxp, which draws every box plot (Axes.boxplot, pandas, seaborn), keeps each plot's
        statistics on its axes: e2b_charts reads boxes back from their shapes, which misses the
        default ones (drawn as lines, not patches), notched ones and most outliers."""

        def record(ax, bxpstats, artists):
            try:
                stats = [{key: (list(map(float, value)) if key == "fliers" else value if key == "label" else float(value))
                          for key, value in box.items() if key in BOX_STATS} for box in bxpstats]
                ax.__dict__.setdefault("_sandlot_boxes", []).append((stats, artists))
            except Exception:  # statistics it cannot read: the chart is made from the shapes
                pass

        # Compiled as if in matplotlib's own module: its deprecation warnings name the first frame
        # outside matplotlib (by module name, or by file from Python 3.12), the user's, not this one.
        namespace = {"__name__": module.__name__, "original": module.Axes.bxp, "record": record}
        exec(compile("def bxp(self, bxpstats, *args, **kwargs):\n"
                     "    artists = original(self, bxpstats, *args, **kwargs)\n"
                     "    record(self, bxpstats, artists)\n"
                     "    return artists\n", module.__file__, "exec"), namespace)
        functools.update_wrapper(namespace["bxp"], module.Axes.bxp)
        module.Axes.bxp = namespace["bxp"]

    BOX_STATS = ("label", "whislo", "q1", "med", "q3", "whishi", "fliers")

    def box_chart(ax, charts):
        """A box-and-whisker chart of the box plots recorded on `ax` that it still shows, or None."""
        try:
            from e2b_charts.utils.rounding import dynamic_round
        except ImportError:
            def dynamic_round(value):
                return value

        boxes, horizontal = {}, False  # position -> statistics: a box drawn over another hides it
        for stats, artists in ax.__dict__.get("_sandlot_boxes", ()):
            medians = artists.get("medians") or []
            if len(medians) != len(stats) or not all(line in ax._children for line in medians):
                continue  # cleared or removed since
            for box, median in zip(stats, medians):
                xs, ys = median.get_xdata(), median.get_ydata()
                horizontal = xs[0] == xs[-1]  # the median crosses the box: upright in a horizontal plot
                across = ys if horizontal else xs
                boxes[round(float(sum(across)) / len(across), 6)] = box
        if not boxes:
            return None
        axis = ax.yaxis if horizontal else ax.xaxis
        ticks = {round(float(loc), 6): label.get_text() for loc, label in zip(axis.get_ticklocs(), axis.get_ticklabels())}

        def label(box, position):
            text = ticks.get(position) or str(box.get("label", ""))
            return text or ("%d" % position if position == int(position) else "%g" % position)

        chart = charts.BoxAndWhiskerChart(elements=[{
            "label": label(box, position), "min": dynamic_round(box["whislo"]),
            "first_quartile": dynamic_round(box["q1"]), "median": dynamic_round(box["med"]),
            "third_quartile": dynamic_round(box["q3"]), "max": dynamic_round(box["whishi"]),
            "outliers": [dynamic_round(v) for v in box.get("fliers", ())]} for position, box in boxes.items()])
        super(charts.BoxAndWhiskerChart, chart)._extract_info(ax)  # title, axis labels and units
        if horizontal:
            chart._change_orientation()  # as e2b_charts: x is the axis of the boxes
        return chart

    def chart(figure):
        try:
            from e2b_charts import main as charts
        except ImportError:
            return None

        def of_axes(ax):
            return box_chart(ax, charts) or charts.get_chart_from_ax(ax)

        try:
            # e2b_charts trips over numpy ticks (pydantic serializer warnings) and deprecated
            # matplotlib attributes: its warnings are not the user's output
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # charts.chart_figure_to_dict, with box plots read from their statistics
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

    def display_shown_images(module):
        """No screen here: image.show() displays the image as a result instead of looking for a
        viewer program."""

        def show(image, title=None, **options):
            from IPython.display import display

            display(image)
            return True

        module.show = show

    def display_saved_images(module):
        """E2B displays an image its code saves to a file: so does sandlot (once it is saved)."""
        save = module.Image.save

        def save_and_display(self, fp, *args, **kwargs):
            result = save(self, fp, *args, **kwargs)
            if isinstance(fp, (str, os.PathLike)):
                from IPython.display import display

                display(self)
            return result

        module.Image.save = save_and_display

    class PatchOnImport:
        """Patches modules as they are first imported (by the user's code: nothing is imported
        ahead of it), then leaves sys.meta_path."""

        def __init__(self, patches):
            self.patches, self.busy = patches, False

        def find_spec(self, name, path, target=None):
            patch = self.patches.get(name)
            if patch is None or self.busy:
                return None
            self.busy = True  # find_spec below asks every finder again, this one included
            try:
                spec = importlib.util.find_spec(name)
            finally:
                self.busy = False
            if spec is None or spec.loader is None:
                return spec
            del self.patches[name]
            if not self.patches:
                sys.meta_path.remove(self)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                try:
                    patch(module)
                except Exception:  # a version that moved things: unpatched, still importable
                    pass

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, PatchOnImport({"PIL.ImageShow": display_shown_images, "PIL.Image": display_saved_images,
                                           "matplotlib.axes._axes": record_boxes}))

    # ipykernel flushes stdout and stderr four times per run, each a round trip to its IOPub
    # thread (~0.3 ms apiece here) even when nothing was written: skip the trip when the stream
    # holds nothing. Data written later is flushed as before (by the next flush or its timer).
    # Before that, output written to fd 1 or 2 directly (os.write, C code, which a thread per
    # stream moves from a pipe into the stream) is waited for, so it belongs to the run that wrote
    # it; ipykernel sleeps 0.5 ms per run for that instead (_execute_sleep, off: see spawn.py).
    try:
        import fcntl
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
