"""In-sandbox code contexts: driver.py (Jupyter kernels and node behind a pipe), startup.py (run in
each python kernel) and javascript.js (the node runner). sandlot itself imports none of them."""
