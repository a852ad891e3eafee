"""cam_core: see where a NEU-DET defect classifier is looking, and measure whether it is the defect.

Pure library (no Streamlit): data loading, model registry and checkpoints, the CAM engine,
localization metrics, training and evaluation loops.
"""

__version__ = "0.1.0"
