"""CNN history: the architectures that led to EfficientNet, every figure with its source; the
user's own CIFAR-10 runs on the same size-vs-error chart; and EfficientNet's compound scaling."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.content.history import COMPOUND_SCALING, compound_scaling, history_frame
from core.settings.variants import PAPER, VARIANTS
from dashboard import state
from dashboard.result_charts import (HISTORY_METRICS, history_points, history_scatter_figure,
                                     runs_frame, scaling_figure)

METRIC_LABELS = {"top1": "ImageNet top-1 error (single model)",
                 "top5": "ImageNet top-5 error (single model)",
                 "ilsvrc": "ILSVRC top-5 error (contest entry, often an ensemble)"}
COMPARE_WITH = ("AlexNet", "ResNet-50", "ResNet-152")


@st.cache_data(show_spinner=False)
def table() -> pd.DataFrame:
    return history_frame()


def variants_table() -> pd.DataFrame:
    return pd.DataFrame([{
        "Variant": v.label, "Width ×": v.width, "Depth ×": v.depth, "Resolution (px)": v.resolution,
        "Dropout": v.dropout, "Base params (M, no top)": v.base_params / 1e6,
        "Paper params (M)": v.paper_params_m, "Paper FLOPs (B)": v.paper_flops_b,
        "ImageNet top-1 (%)": v.imagenet_top1,
    } for v in VARIANTS.values()])


st.title("CNN history: from LeNet-5 to EfficientNet")
history = table()

st.subheader("The architectures")
st.dataframe(
    history[["name", "year", "authors", "venue", "ilsvrc_top5_error", "imagenet_top1", "imagenet_top5",
             "params_millions", "depth_layers", "flops_billions", "key_idea", "notes",
             "figures_source", "url"]],
    column_config={
        "name": st.column_config.TextColumn("Network", pinned=True),
        "year": st.column_config.NumberColumn("Year", format="%d"),
        "authors": "Authors",
        "venue": "Published",
        "ilsvrc_top5_error": st.column_config.NumberColumn("ILSVRC top-5 error (%)", format="%.2f",
                                                           help="The contest entry, often an ensemble"),
        "imagenet_top1": st.column_config.NumberColumn("ImageNet top-1 (%)", format="%.1f",
                                                       help="Single model, validation set"),
        "imagenet_top5": st.column_config.NumberColumn("ImageNet top-5 (%)", format="%.1f"),
        "params_millions": st.column_config.NumberColumn("Params (M)", format="%.2f"),
        "depth_layers": st.column_config.NumberColumn("Depth (layers with weights)", format="%d"),
        "flops_billions": st.column_config.NumberColumn("FLOPs (B)", format="%.2f"),
        "key_idea": st.column_config.TextColumn("Key idea", width="large"),
        "notes": st.column_config.TextColumn("Notes", width="large"),
        "figures_source": st.column_config.TextColumn("Source of the figures", width="large"),
        "url": st.column_config.LinkColumn("Paper", display_text="open"),
    },
    hide_index=True, width="stretch",
)
st.caption("None: no published figure of that kind (LeNet-5 was an MNIST network; ZFNet's "
           "paper gives no parameter count). ILSVRC entries are usually ensembles, so compare them with "
           "each other, and single-model accuracies with each other.")

st.subheader("Size against error")
controls = st.columns([3, 2])
metric = controls[0].radio("Error measure", list(HISTORY_METRICS), key="history_metric",
                           format_func=METRIC_LABELS.get, horizontal=True)
show_runs = controls[1].toggle("Show my CIFAR-10 runs", value=True, key="history_show_runs")
runs = runs_frame(state.run_summaries()) if show_runs else None
st.plotly_chart(history_scatter_figure(history, runs, metric), key="history_chart",
                config={"displayModeBar": False}, theme=None)
_, left_out = history_points(history, metric)
notes = []
if left_out:
    notes.append(f"Not plotted (no {METRIC_LABELS[metric].split(' (')[0]} or no parameter count): "
                 + ", ".join(left_out) + ".")
notes.append("Your runs are CIFAR-10 test error (10 classes, 32×32 images), not ImageNet (1,000 "
             "classes): a CIFAR-10 error is not a like-for-like comparison, but the parameter axis is. "
             "Parameters of a run: the variant's base (core.settings.variants) plus its head.")
st.caption(" ".join(notes))

if runs is not None and not runs.empty:
    best = runs.sort_values("test_accuracy", ascending=False).iloc[0]
    rows = [{"Model": f"Your best run ({best['variant']} @ {best['image_size']} px)",
             "Params (M)": best["params_millions"], "Error (%)": best["test_error"],
             "Measured on": "CIFAR-10 test set", "Parameters vs yours": "—"}]
    for name in COMPARE_WITH:
        ref = history.loc[history["name"] == name].iloc[0]
        rows.append({"Model": name, "Params (M)": ref["params_millions"],
                     "Error (%)": 100 - ref["imagenet_top1"], "Measured on": "ImageNet top-1",
                     "Parameters vs yours": f"{ref['params_millions'] / best['params_millions']:.1f}× yours"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"Params (M)": st.column_config.NumberColumn(format="%.2f"),
                                "Error (%)": st.column_config.NumberColumn(format="%.1f")})
elif show_runs:
    st.info("None of your runs has a test accuracy yet; a finished run gets one.")

st.subheader("EfficientNet's compound scaling")
a, b, g = (COMPOUND_SCALING[k] for k in ("alpha", "beta", "gamma"))
st.markdown("Tan & Le (ICML 2019, [arXiv:1905.11946](https://arxiv.org/abs/1905.11946)) scale depth, "
            "width and resolution together with one coefficient φ:")
st.latex(rf"d = \alpha^{{\phi}},\quad w = \beta^{{\phi}},\quad r = \gamma^{{\phi}},\qquad "
         rf"\alpha = {a},\ \beta = {b},\ \gamma = {g},\quad \alpha\,\beta^2\,\gamma^2 = "
         rf"{a * b * b * g * g:.3f} \approx 2")
st.caption("FLOPs grow with d·w²·r², so each step of φ roughly doubles them.")
phi = st.slider("Compound coefficient φ", 0.0, 7.0, 1.0, 0.1, key="phi")
s = compound_scaling(phi)
cols = st.columns(4)
cols[0].metric("Depth", f"×{s['depth']:.2f}")
cols[1].metric("Width", f"×{s['width']:.2f}")
cols[2].metric("Resolution", f"{s['resolution_px']} px", f"×{s['resolution']:.2f}", delta_color="off")
cols[3].metric("FLOPs", f"×{s['flops']:.1f}")
st.plotly_chart(scaling_figure(phi), key="scaling_chart", config={"displayModeBar": False},
                theme=None)

st.markdown("**B0–B7 as Keras builds them.** Keras's variants use rounded, hand-set coefficients "
            "rather than exact powers of α, β, γ:")
st.dataframe(variants_table(), hide_index=True, width="stretch",
             column_config={"Base params (M, no top)": st.column_config.NumberColumn(format="%.2f")})
st.caption(f"Width, depth, resolution, dropout: keras.applications.efficientnet; base parameters "
           f"measured with Keras 3.15; ImageNet top-1, paper params and FLOPs: {PAPER}.")
