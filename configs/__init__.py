"""ml_collections config files for ``launch.py --config=configs/<name>.py``."""
