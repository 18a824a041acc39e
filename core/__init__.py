"""EfficientNet Lab's engine: plain Python + TensorFlow/Keras, no Streamlit, no Plotly."""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) buries the CLI's own output and
# the server log; warnings and errors still show. Set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
