"""EfficientNet Lab dashboard entry point (placeholder until the dashboard lands)."""

import streamlit as st

st.set_page_config(page_title="EfficientNet Lab", page_icon="🧪", layout="wide")
st.title("EfficientNet Lab")
st.write("Train EfficientNet B0–B7 on CIFAR-10. The engine is ready: `python -m core train --help`.")
