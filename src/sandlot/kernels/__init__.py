"""In-sandbox code contexts: driver.py (Jupyter kernels behind a pipe) and startup.py (run in each python kernel). Neither is imported by sandlot itself."""
