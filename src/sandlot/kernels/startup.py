# Run in every python context's kernel at start (IPKernelApp.exec_files), in the user's namespace:
# everything lives inside one function that deletes itself, so the namespace stays clean.
#
# It adds E2B's two extra display formats, both registered by type *name* so that neither pandas
# nor matplotlib is imported before the user's code does (a kernel starts ~0.5 s faster):
#   e2b/data   a pandas DataFrame as {column: [values...]}
#   e2b/chart  a matplotlib figure described as data (e2b_charts: type, title, axes, elements)
# and makes PIL's Image.show() display the image instead of looking for a viewer.


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

    def chart(figure):
        try:
            from e2b_charts import chart_figure_to_dict
        except ImportError:
            return None
        try:
            # e2b_charts trips over numpy ticks (pydantic serializer warnings) and deprecated
            # matplotlib attributes: its warnings are not the user's output
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return chart_figure_to_dict(figure)
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
    try:
        from ipykernel.iostream import OutStream

        flush = OutStream.flush

        def flush_if_pending(self):
            if self._buffers or self.echo is not None:
                flush(self)

        if hasattr(OutStream, "_buffers") or "_buffers" in OutStream.__init__.__code__.co_names:
            OutStream.flush = flush_if_pending
    except Exception:
        pass

_sandlot_startup()
del _sandlot_startup
