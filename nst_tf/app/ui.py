"""The app's page: a Gradio Blocks layout whose buttons call :mod:`.jobs`.

Offline by design: analytics and Gradio's version check are off, no share link is
made, and the theme names system fonts so the page asks no font service for any.
"""

import functools
import inspect
import os
import threading

import gradio as gr

from nst_tf import gatys
from nst_tf import images
from nst_tf.app import jobs
from nst_tf.app import models
from nst_tf.errors import NSTError

SAMPLES = [os.fspath(images.SAMPLE_CONTENT), os.fspath(images.SAMPLE_STYLE)]
# A fixed-style net's colour modes: "histogram" recolours paintings, which such a net has none of.
NET_COLOR_MODES = tuple(m for m in images.PRESERVE_COLOR_MODES if m != "histogram")
GATYS = "Gatys"


def _input(label, elem_id, **kwargs):
    return gr.Image(label=label, type="filepath", sources=["upload", "clipboard"], elem_id=elem_id, **kwargs)


def _errors_shown(fn):
    """``fn`` with :class:`NSTError` shown in the page (``gr.Error``) instead of failing the event."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except NSTError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NSTError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return function


def _samples(inputs, elem_id):
    return gr.Examples([SAMPLES[: len(inputs)]], inputs, label="Samples: click to use them", elem_id=elem_id)


def _output(label, elem_id):
    return gr.Image(
        label=label, format="png", interactive=False, elem_id=elem_id, buttons=["download", "fullscreen"], height=420
    )


class App:
    """The app of an :class:`~nst_tf.app.AppConfig`: its feature network, nets and page."""

    def __init__(self, config, network=None):
        self.config = config
        self.network = network or jobs.FeatureNetwork(config.weights, config.feature_extractor)
        self.models = models.find_models(config.models_dir)
        self.cache = models.StylizerCache()
        # The running Gatys job of each browser session, for its cancel button.
        self._jobs = {}
        self._jobs_lock = threading.Lock()

    def read(self, upload, what):
        """An image input's upload, as the events hand it over: not preprocessed (``preprocess=False``).

        ``gr.Image`` would open uploads with Pillow before a handler runs, so a text file
        named .jpg would fail there in Pillow's words; :func:`.jobs.read_image` decodes
        instead, and its errors say what is wrong in the app's.
        """
        return jobs.read_image(self.upload_path(upload), what, self.config.max_side, self.config.max_megapixels)

    @staticmethod
    def upload_path(upload):
        return upload.get("path") if upload else None

    def entry(self, label):
        for entry in self.models:
            if entry.label == label:
                return entry
        raise NSTError(f"model {label or '(none chosen)'}: not found under {self.config.models_dir}")

    # --- Gatys tab -------------------------------------------------------------------

    def run_gatys(
        self,
        content,
        style,
        style2,
        style2_weight,
        size,
        steps,
        strength,
        tv,
        color,
        request: gr.Request,
        progress=gr.Progress(),  # noqa: B008  (Gradio's way of asking for its progress bar)
    ):
        photo = self.read(content, "photo")
        styles = [self.read(style, "painting")]
        blend = None
        if style2:
            styles.append(self.read(style2, "second painting"))
            blend = (1.0 - style2_weight, style2_weight)
        config = self.network.gatys_config(
            image_size=size,
            num_steps=steps,
            style_log_ratio=strength,
            tv_weight=tv,
            style_weights=blend,
            preserve_color=color,
        )
        job = jobs.GatysJob(self.network, photo, styles, config)
        with self._jobs_lock:
            self._jobs[request.session_hash] = job
        try:
            for update in job:
                progress((update.step, update.total), unit="steps")
                image = None if update.image is None else images.to_uint8(update.image)
                yield update.status(), image
        finally:
            with self._jobs_lock:
                if self._jobs.get(request.session_hash) is job:
                    del self._jobs[request.session_hash]

    def cancel_gatys(self, request: gr.Request):
        with self._jobs_lock:
            job = self._jobs.get(request.session_hash)
        if job is not None:
            job.cancel()

    # --- Trained nets tab ------------------------------------------------------------

    def max_styles(self):
        return max([len(e.style_names) for e in self.models if e.kind == "multistyle"] + [1])

    def net_controls(self, label):
        """Visibility of the controls a chosen net takes (α, direction, style sliders), and the sliders' labels.

        The painting upload stays in view: Gradio's examples redraw an image input as it was
        built, undoing a visibility update.
        """
        entry = self.entry(label) if label else None
        kind = entry.kind if entry else None
        names = entry.style_names if kind == "multistyle" else ()
        sliders = [
            gr.update(visible=i < len(names), label=names[i] if i < len(names) else "", value=1.0 if i == 0 else 0.0)
            for i in range(self.max_styles())
        ]
        directions = entry.directions if kind == "cyclegan" else ("a2b",)
        return [
            gr.update(visible=kind == "arbitrary"),
            gr.update(visible=kind == "cyclegan", choices=list(directions), value=directions[0]),
            *sliders,
        ]

    def run_net(self, label, content, style, alpha, direction, color, *style_weights):
        entry = self.entry(label)
        if entry.kind == "arbitrary" and style:
            # The net reads the painting file itself; read here first, a bad file is named as the user knows it.
            self.read(style, "painting")
        weights = list(style_weights[: len(entry.style_names)]) if entry.kind == "multistyle" else None
        output = jobs.stylize_with_net(
            entry,
            self.cache,
            self.read(content, "photo"),
            style_weights=weights,
            style_path=self.upload_path(style),
            alpha=alpha,
            direction=direction,
            preserve_color=color,
            max_side=self.config.max_side,
        )
        return images.to_uint8(output)

    # --- Compare tab -----------------------------------------------------------------

    def run_compare(self, content, style, methods, steps):
        if not methods:
            raise NSTError("methods: choose at least one")
        photo, painting = self.read(content, "photo"), self.read(style, "painting")
        gallery, lines = [], []
        for method in methods:
            if method == GATYS:
                config = self.network.gatys_config(image_size=min(512, max(photo.shape[:2])), num_steps=steps)
                output = gatys.stylize(photo, painting, config, extractor=self.network.model)
            else:
                output = jobs.stylize_with_net(
                    self.entry(method), self.cache, photo, style_path=self.upload_path(style)
                )
            caption = jobs.metrics_caption(method, self.network.metrics(output, photo, painting))
            gallery.append((images.to_uint8(output), caption))
            lines.append(f"- {caption}")
        return gallery, "\n".join(lines)

    # --- page ------------------------------------------------------------------------

    def build(self):
        """The page, as a ``gr.Blocks`` ready to launch."""
        nets = [e.label for e in self.models]
        with gr.Blocks(title="nst_tf", analytics_enabled=False) as page:
            gr.Markdown(f"# nst_tf: neural style transfer\n{self.network.line}")
            with gr.Tab(GATYS, id="gatys"):
                self._gatys_tab()
            with gr.Tab("Trained nets", id="nets"):
                self._nets_tab(nets)
            with gr.Tab("Compare", id="compare"):
                self._compare_tab()
        page.queue(default_concurrency_limit=1)
        return page

    def _gatys_tab(self):
        with gr.Row():
            content = _input("Photo", elem_id="gatys-content")
            style = _input("Painting", elem_id="gatys-style")
            style2 = _input("Second painting (optional)", elem_id="gatys-style2")
        _samples([content, style], "gatys-samples")
        with gr.Row():
            size = gr.Slider(
                64,
                self.config.max_side,
                value=min(256, self.config.max_side),
                step=16,
                label="Size (longest side, px)",
                elem_id="gatys-size",
            )
            steps = gr.Slider(1, 1000, value=100, step=1, label="Iterations (L-BFGS)", elem_id="gatys-steps")
            strength = gr.Slider(
                1.0, 6.0, value=jobs.DEFAULT_STYLE_LOG_RATIO, step=0.25, label="Style strength: log10 β/α (paper: 3)"
            )
        with gr.Row():
            style2_weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Second painting's blend weight")
            tv = gr.Slider(
                0.0, 1000.0, value=jobs.GATYS_DEFAULTS.loss.tv_weight, step=10.0, label="Total variation weight"
            )
            color = gr.Dropdown(list(images.PRESERVE_COLOR_MODES), value="none", label="Colour preservation")
        with gr.Row():
            run = gr.Button("Stylize", variant="primary", elem_id="gatys-run")
            cancel = gr.Button("Cancel", variant="stop", elem_id="gatys-cancel")
        status = gr.Textbox(label="Progress", interactive=False, elem_id="gatys-status")
        output = _output("Result (download as PNG)", "gatys-output")
        run.click(
            _errors_shown(self.run_gatys),
            [content, style, style2, style2_weight, size, steps, strength, tv, color],
            [status, output],
            concurrency_limit=self.config.gatys_concurrency,
            concurrency_id="gatys",
            show_progress="minimal",
            preprocess=False,
        )
        cancel.click(self.cancel_gatys, None, None, queue=False)

    def _nets_tab(self, nets):
        if not nets:
            gr.Markdown(
                f"No trained nets under `{self.config.models_dir}`: train one with {models.TRAIN_HINT}, "
                "then start the app again.",
                elem_id="nets-none",
            )
            return
        # The controls start as the first net wants them, with no update at page load.
        first = [{k: v for k, v in update.items() if k != "__type__"} for update in self.net_controls(nets[0])]
        with gr.Row():
            model = gr.Dropdown(nets, value=nets[0], label="Net", elem_id="nets-model")
            color = gr.Dropdown(list(NET_COLOR_MODES), value="none", label="Colour preservation")
        with gr.Row():
            content = _input("Photo", elem_id="nets-content")
            style = _input("Painting (arbitrary-style nets only)", elem_id="nets-style")
        _samples([content, style], "nets-samples")
        alpha = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Style strength α", **first[0])
        direction = gr.Radio(label="CycleGAN direction", elem_id="nets-direction", **first[1])
        with gr.Row():
            sliders = [gr.Slider(0.0, 1.0, step=0.05, **kwargs) for kwargs in first[2:]]
        run = gr.Button("Stylize", variant="primary", elem_id="nets-run")
        output = _output("Result (download as PNG)", "nets-output")
        controls = [alpha, direction, *sliders]
        model.change(_errors_shown(self.net_controls), model, controls, queue=False)
        run.click(
            _errors_shown(self.run_net),
            [model, content, style, alpha, direction, color, *sliders],
            output,
            preprocess=False,
        )

    def _compare_tab(self):
        with gr.Row():
            content = _input("Photo", elem_id="compare-content")
            style = _input("Painting", elem_id="compare-style")
        _samples([content, style], "compare-samples")
        runnable = [GATYS] + [e.label for e in self.models if e.kind != "cyclegan"]
        methods = gr.CheckboxGroup(runnable, value=runnable[:3], label="Methods", elem_id="compare-methods")
        steps = gr.Slider(1, 300, value=50, step=1, label="Gatys iterations", elem_id="compare-steps")
        run = gr.Button("Compare", variant="primary", elem_id="compare-run")
        gallery = gr.Gallery(label="Results", columns=3, format="png", elem_id="compare-gallery")
        table = gr.Markdown(elem_id="compare-metrics")
        run.click(
            _errors_shown(self.run_compare),
            [content, style, methods, steps],
            [gallery, table],
            concurrency_limit=self.config.gatys_concurrency,
            concurrency_id="gatys",
            preprocess=False,
        )


def launch(app, *, block=True):
    """Serve ``app``'s page on its config's host and port; returns the launched ``gr.Blocks``."""
    page = app.build()
    page.launch(
        server_name=app.config.host,
        server_port=app.config.port,
        share=False,
        ssr_mode=False,
        quiet=True,
        prevent_thread_lock=not block,
        theme=gr.themes.Default(
            font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
        ),
    )
    return page
