"""EfficientNet Lab dashboard: Streamlit glue (state.py) and pure Plotly chart builders."""
